#!/usr/bin/env bash
# Placeholder: the test guest (kernel + initramfs + agent) is built here (issue 3).
exit 0
