// Package scripts holds the checks of the project's shell scripts and
// Makefile that no shell test would catch on its own (see pipes_test.go).
package scripts
