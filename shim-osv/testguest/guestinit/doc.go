// Package guestinit is the init (PID 1) and the programs of Feather's
// OSv-protocol test guest: a small Linux guest that boots the way OSv does
// (command line from the kernel command line, or at byte 512 of the boot
// disk), honours OSv's loader options, runs the commands, prints OSv's
// "program X returned N" line and powers off. See ../README.md.
package guestinit
