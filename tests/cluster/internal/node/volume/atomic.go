package volume

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const dataDirName = "..data"

// WriteAtomic makes dir contain exactly payload, the way the kubelet's
// AtomicWriter does: files live in a timestamped hidden directory, "..data"
// is a symlink to it (swapped with a rename), and each top-level name is a
// symlink into "..data". It returns false without touching anything when
// the content (data and modes) is already there. fsGroup, if set, is
// applied to the new files (read-only volume semantics).
func WriteAtomic(dir string, payload Payload, fsGroup *int64) (bool, error) {
	if err := ValidatePaths(payload); err != nil {
		return false, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	oldTarget, _ := os.Readlink(filepath.Join(dir, dataDirName))
	if oldTarget != "" && sameContent(filepath.Join(dir, oldTarget), payload) {
		return false, nil
	}
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return false, err
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return false, err
	}
	for _, p := range SortedPaths(payload) {
		f := payload[p]
		full := filepath.Join(ts, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(full, f.Data, 0o600); err != nil {
			return false, err
		}
		if err := os.Chmod(full, os.FileMode(f.Mode)&os.ModePerm); err != nil {
			return false, err
		}
		if f.FsUser != nil {
			if err := os.Lchown(full, int(*f.FsUser), -1); err != nil {
				return false, err
			}
		}
	}
	if fsGroup != nil {
		if err := SetOwnership(ts, *fsGroup, true); err != nil {
			return false, err
		}
	}
	tmpLink := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(ts), tmpLink); err != nil {
		return false, err
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataDirName)); err != nil {
		return false, err
	}
	// Top-level symlinks.
	want := map[string]bool{}
	for p := range payload {
		want[strings.SplitN(p, "/", 2)[0]] = true
	}
	for top := range want {
		link := filepath.Join(dir, top)
		target := filepath.Join(dataDirName, top)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return false, fmt.Errorf("symlink %s: %w", link, err)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "..") {
			if name != dataDirName && name != filepath.Base(ts) && e.IsDir() {
				_ = os.RemoveAll(filepath.Join(dir, name))
			}
			continue
		}
		if !want[name] {
			if cur, err := os.Readlink(filepath.Join(dir, name)); err == nil && strings.HasPrefix(cur, dataDirName+"/") {
				_ = os.Remove(filepath.Join(dir, name))
			}
		}
	}
	return true, nil
}

func sameContent(dataDir string, payload Payload) bool {
	n := 0
	err := filepath.Walk(dataDir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		n++
		rel, _ := filepath.Rel(dataDir, p)
		f, ok := payload[rel]
		if !ok {
			return fmt.Errorf("extra")
		}
		if info.Mode().Perm()&^0o440 != os.FileMode(f.Mode).Perm()&^0o440 {
			return fmt.Errorf("mode")
		}
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, f.Data) {
			return fmt.Errorf("data")
		}
		return nil
	})
	return err == nil && n == len(payload)
}
