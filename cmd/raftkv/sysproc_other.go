//go:build !linux

package main

import "syscall"

// devSysProcAttr leaves a dev node in raftkv dev's process group: the
// terminal's Ctrl-C reaches both, and each stops cleanly on its own.
func devSysProcAttr() *syscall.SysProcAttr { return nil }
