package main

import "syscall"

// devSysProcAttr puts a dev node in its own process group, so that the
// terminal's Ctrl-C reaches only raftkv dev, which stops the nodes itself,
// and has the kernel send the node SIGTERM if raftkv dev dies first.
func devSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
