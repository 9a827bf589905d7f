//go:build !linux

package logs

import (
	"os"
	"time"
)

// lockWriter does nothing without Linux's flock(2).
func lockWriter(*os.File) {}

// WaitWriter cannot tell without Linux's flock(2): it reports the writer done.
func WaitWriter(string, time.Duration) bool { return true }
