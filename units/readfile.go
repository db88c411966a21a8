package units

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// MaxFileSize bounds the files Load reads from a release (service.json, package.json): a
// service.json is a few KiB, so a bigger one is a mistake or an attack, and reading it
// whole must not cost the agent memory.
const MaxFileSize = 1 << 20

// ErrNotRegular means a file Load reads from a release is not a regular file of the
// release itself: a symlink (wherever it points, even inside the release), a FIFO, a
// device, a socket or a directory. Load refuses them without following or opening them, so
// a release can neither make the agent read a file outside it with the agent's rights nor
// block it on a FIFO.
var ErrNotRegular = errors.New("not a regular file")

// readReleaseFile reads the regular file name directly in the directory open as dirfd, at
// most MaxFileSize bytes. A missing file is an error wrapping os.ErrNotExist; anything but a
// regular file is refused (ErrNotRegular) before it is opened, by its type: "not a regular
// file (fifo)". The file is then opened with O_NOFOLLOW and O_NONBLOCK and checked again
// through its descriptor, so one swapped in between is neither followed nor waited on.
func readReleaseFile(dirfd int, name string) ([]byte, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%s: %w", name, os.ErrNotExist)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := regular(dirfd, name, &st); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := regular(dirfd, name, &st); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes: refused", name, MaxFileSize)
	}
	return data, nil
}

// regular refuses st unless it is a regular file of at most MaxFileSize bytes, naming the
// type it is instead, and a symlink's target (what the release says, never what is there).
func regular(dirfd int, name string, st *unix.Stat_t) error {
	kind := ""
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if st.Size > MaxFileSize {
			return fmt.Errorf("%s: %d bytes, larger than %d: refused", name, st.Size, MaxFileSize)
		}
		return nil
	case unix.S_IFLNK:
		kind = "symlink"
		buf := make([]byte, 256)
		if n, err := unix.Readlinkat(dirfd, name, buf); err == nil {
			kind = fmt.Sprintf("symlink to %q", buf[:n])
		}
	case unix.S_IFIFO:
		kind = "fifo"
	case unix.S_IFCHR:
		kind = "character device"
	case unix.S_IFBLK:
		kind = "block device"
	case unix.S_IFSOCK:
		kind = "socket"
	case unix.S_IFDIR:
		kind = "directory"
	default:
		kind = fmt.Sprintf("mode %#o", st.Mode&unix.S_IFMT)
	}
	return fmt.Errorf("%s: %w (%s): the agent reads only regular files of the release", name, ErrNotRegular, kind)
}
