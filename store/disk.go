package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ExitDisk is the exit code of a virality command stopped by its state's
// disk (no space, read-only, I/O error): distinct from 1 (other errors)
// and 2 (usage), so that a supervisor can tell it apart. The state up to
// the last commit is intact; run the same command again once the disk is
// fixed and it resumes from there.
const ExitDisk = 74

// DiskError is a failure of the file system under the state: it names the
// directory and the cause in words a user can act on.
type DiskError struct {
	Dir   string
	Cause string // "no space left on device", "read-only file system", "I/O error"
	Err   error
}

func (e *DiskError) Error() string {
	return fmt.Sprintf("state %s: %s (%v): free space, make it writable or move --state-dir, then run again: it resumes from its last commit",
		e.Dir, e.Cause, e.Err)
}

func (e *DiskError) Unwrap() error { return e.Err }

// diskError returns err as a *DiskError when the file system caused it.
func diskError(dir string, err error) error {
	if err == nil {
		return nil
	}
	var de *DiskError
	if errors.As(err, &de) {
		return err
	}
	for errno, cause := range map[syscall.Errno]string{
		syscall.ENOSPC: "no space left on device",
		syscall.EDQUOT: "disk quota exceeded",
		syscall.EROFS:  "read-only file system",
		syscall.EIO:    "I/O error",
		syscall.EACCES: "permission denied",
	} {
		if errors.Is(err, errno) {
			return &DiskError{Dir: dir, Cause: cause, Err: err}
		}
	}
	return err
}

// FreeBytes is the space left for an unprivileged writer on the file
// system that holds dir.
func FreeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Dir is the state directory.
func (d *DB) Dir() string { return d.dir }

// fatal is where Pebble's fatal errors go: Pebble does not expect its
// logger's Fatalf to return, and a panic there unwinds through its locks
// into a runtime fatal error and a goroutine dump. Instead the process
// says in one line what went wrong with which directory, and exits with
// ExitDisk when the disk caused it (its state up to the last commit is
// intact), else 1.
var fatal = func(dir string, msg string) {
	cause := "internal error in the state store"
	code := 1
	for _, c := range []struct{ text, cause string }{
		{"no space left on device", "no space left on device"},
		{"disk quota exceeded", "disk quota exceeded"},
		{"read-only file system", "read-only file system"},
		{"input/output error", "I/O error"},
		{"permission denied", "permission denied"},
	} {
		if containsFold(msg, c.text) {
			cause, code = c.cause, ExitDisk
			break
		}
	}
	fmt.Fprintf(os.Stderr, "virality: state %s: %s: %s\n", dir, cause, oneLine(msg))
	os.Exit(code)
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		match := true
		for j := 0; j < len(sub); j++ {
			a, b := s[i+j], sub[j]
			if 'A' <= a && a <= 'Z' {
				a += 'a' - 'A'
			}
			if a != b {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

func oneLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
