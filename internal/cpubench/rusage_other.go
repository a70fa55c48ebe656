//go:build !unix

package cpubench

// processCPU cannot tell on this system; Start reports nothing.
func processCPU() int64 { return -1 }
