package prosodytest

import "syscall"

// sysProcAttr makes the kernel kill Prosody if the test process dies
// without stopping it, so no server outlives a crashed or killed test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
