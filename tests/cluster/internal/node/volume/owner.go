package volume

import (
	"os"
	"path/filepath"
)

// SetOwnership gives everything under dir to group fsGroup, like the
// kubelet's SetVolumeOwnership: files get g+rw (g+r when readOnly), and
// directories also g+x and the setgid bit so new files inherit the group.
// Symlinks are not followed.
func SetOwnership(dir string, fsGroup int64, readOnly bool) error {
	return filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode()&os.ModeSymlink != 0 {
			return os.Lchown(p, -1, int(fsGroup))
		}
		if err := os.Lchown(p, -1, int(fsGroup)); err != nil {
			return err
		}
		mask := os.FileMode(0o660)
		if readOnly {
			mask = 0o440
		}
		mode := info.Mode()
		if info.IsDir() {
			mask |= os.ModeSetgid | 0o110
		}
		return os.Chmod(p, (mode&(os.ModePerm|os.ModeSetgid|os.ModeSetuid|os.ModeSticky))|mask)
	})
}
