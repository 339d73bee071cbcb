//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package queue

import (
	"os"
	"path/filepath"
)

// lockDir only creates the lock file here: there is no flock, and two
// queues on one directory are not detected.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
}
