// Package cinit is the "container init": the node re-executes itself as
//
//	unshare --mount --uts --propagation slave -- kubeloop-node container-init --spec FILE
//
// (or, for exec probes and hooks, under "nsenter --target PID --mount --net
// --uts" with --enter). In the fresh single-threaded process it joins the
// container's cgroups and network namespace, bind-mounts the volumes, sets
// the hostname, drops to the container's user and execs the command. A
// failure before the exec is written to fd 3 (the start-error pipe); a
// successful exec closes it (close-on-exec), which is how the node learns
// the container started.
package cinit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Mount is one bind mount.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Spec is what container-init does.
type Spec struct {
	Netns      string   `json:"netns,omitempty"`   // /run/netns/NAME to join ("" = stay)
	Cgroups    []string `json:"cgroups,omitempty"` // cgroup directories to join
	Hostname   string   `json:"hostname,omitempty"`
	Mounts     []Mount  `json:"mounts,omitempty"`
	UID        uint32   `json:"uid"`
	GID        uint32   `json:"gid"`
	Groups     []uint32 `json:"groups,omitempty"`
	NoNewPrivs bool     `json:"noNewPrivs,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	Argv       []string `json:"argv"`
	Env        []string `json:"env"`
	// HideMountsUnder are host paths (e.g. /run/netns, the node's state dir)
	// whose mounts are detached in the container so it does not pin other
	// pods' namespaces or tmpfs volumes.
	HideMountsUnder []string `json:"hideMountsUnder,omitempty"`
	// CreatedLog is a file to which every mount point (or working
	// directory) created on the host is appended, so the node can remove
	// the empty ones when it stops.
	CreatedLog string `json:"createdLog,omitempty"`
}

// StartErrorFD is the fd on which a pre-exec failure is reported.
const StartErrorFD = 3

// ExitCodeStartError is the exit code when the command could not be started.
const ExitCodeStartError = 128

// PrepareThread must be called from an init() when the process is a
// container-init: it pins the main goroutine to the main thread, so the
// per-thread setns and no_new_privs apply to the thread that calls execve.
func PrepareThread() { runtime.LockOSThread() }

// Main runs container-init with args (after the subcommand). It only
// returns on failure, with the exit code to use.
func Main(args []string) int {
	var specPath string
	enter := false
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--spec" && i+1 < len(args):
			specPath = args[i+1]
			i++
		case strings.HasPrefix(a, "--spec="):
			specPath = strings.TrimPrefix(a, "--spec=")
		case a == "--enter":
			enter = true
		}
	}
	errf := os.NewFile(StartErrorFD, "start-error")
	fail := func(err error) int {
		msg := err.Error()
		fmt.Fprintf(os.Stderr, "kubeloop-node container-init: %s\n", msg)
		if errf != nil {
			_, _ = errf.Write([]byte(msg))
		}
		return ExitCodeStartError
	}
	if specPath == "" {
		return fail(errors.New("--spec is required"))
	}
	b, err := os.ReadFile(specPath)
	if err != nil {
		return fail(err)
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return fail(fmt.Errorf("parse spec: %w", err))
	}
	if err := run(&s, enter); err != nil {
		return fail(err)
	}
	return 0 // not reached
}

func run(s *Spec, enter bool) error {
	unix.CloseOnExec(StartErrorFD)
	if len(s.Argv) == 0 {
		return errors.New("no command")
	}
	for _, cg := range s.Cgroups {
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte("0"), 0); err != nil {
			return fmt.Errorf("join cgroup %s: %w", cg, err)
		}
	}
	if !enter {
		if s.Netns != "" {
			fd, err := unix.Open(s.Netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open netns %s: %w", s.Netns, err)
			}
			if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("setns %s: %w", s.Netns, err)
			}
			unix.Close(fd)
		}
		if err := doMounts(s.Mounts, s.CreatedLog); err != nil {
			return err
		}
		hideMounts(s.HideMountsUnder)
		if s.Hostname != "" {
			if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
				return fmt.Errorf("sethostname: %w", err)
			}
		}
	}
	wd := s.WorkingDir
	if wd == "" {
		wd = "/"
	}
	if _, err := os.Stat(wd); os.IsNotExist(err) {
		// Like runc, create a missing working directory (as root).
		if err := mkdirAllLogged(wd, s.CreatedLog); err != nil {
			return fmt.Errorf("create workingDir %s: %w", wd, err)
		}
	}
	unix.Umask(0o022)
	groups := make([]int, len(s.Groups))
	for i, g := range s.Groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(int(s.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", s.GID, err)
	}
	if err := syscall.Setuid(int(s.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", s.UID, err)
	}
	// Changing credentials clears the parent-death signal; set it again so
	// the container dies with the node.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	if os.Getppid() == 1 {
		return errors.New("node exited during container start")
	}
	if s.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("no_new_privs: %w", err)
		}
	}
	if err := os.Chdir(wd); err != nil {
		return fmt.Errorf("chdir to workingDir %q: %w", wd, err)
	}
	path, err := LookPath(s.Argv[0], envPath(s.Env))
	if err != nil {
		return err
	}
	err = unix.Exec(path, s.Argv, s.Env)
	return fmt.Errorf("exec %q: %w", s.Argv[0], err)
}

func envPath(env []string) string {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return e[5:]
		}
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// LookPath finds an executable like execvp does, with the current
// credentials (so a directory the user cannot search is skipped).
func LookPath(file, pathEnv string) (string, error) {
	if strings.Contains(file, "/") {
		if err := unix.Access(file, unix.X_OK); err != nil {
			return "", fmt.Errorf("exec: %q: %w", file, err)
		}
		return file, nil
	}
	var denied error
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		st, err := os.Stat(p)
		if err != nil || st.IsDir() {
			continue
		}
		if err := unix.Access(p, unix.X_OK); err != nil {
			if denied == nil {
				denied = fmt.Errorf("exec: %q: permission denied", p)
			}
			continue
		}
		return p, nil
	}
	if denied != nil {
		return "", denied
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", file)
}

// doMounts bind-mounts every volume (parents first), then makes the
// read-only ones read-only, so a mount point nested in a read-only volume can
// still be created.
func doMounts(mounts []Mount, createdLog string) error {
	sorted := append([]Mount(nil), mounts...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return strings.Count(filepath.Clean(sorted[i].Target), "/") < strings.Count(filepath.Clean(sorted[j].Target), "/")
	})
	// Open every source before mounting anything: a volume mounted early (an
	// emptyDir at /tmp, say) may hide the host path of a later source (the
	// node's state directory under /tmp). Binding from /proc/self/fd/N uses
	// the file opened before the view changed.
	sources := make([]int, len(sorted))
	for i, m := range sorted {
		fd, err := unix.Open(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("mount source %s: %w", m.Source, err)
		}
		sources[i] = fd
	}
	defer func() {
		for _, fd := range sources {
			unix.Close(fd)
		}
	}()
	for i, m := range sorted {
		var st unix.Stat_t
		if err := unix.Fstat(sources[i], &st); err != nil {
			return fmt.Errorf("mount source %s: %w", m.Source, err)
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if err := ensureTarget(m.Target, isDir, createdLog); err != nil {
			return fmt.Errorf("mount point %s: %w", m.Target, err)
		}
		source := fmt.Sprintf("/proc/self/fd/%d", sources[i])
		if err := unix.Mount(source, m.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", m.Source, m.Target, err)
		}
	}
	for i := len(sorted) - 1; i >= 0; i-- {
		m := sorted[i]
		if !m.ReadOnly {
			continue
		}
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
		var sfs unix.Statfs_t
		if unix.Statfs(m.Target, &sfs) == nil {
			// Keep the flags of the underlying mount (required for remount).
			for _, f := range []int64{unix.ST_NOSUID, unix.ST_NODEV, unix.ST_NOEXEC, unix.ST_NOATIME, unix.ST_NODIRATIME, unix.ST_RELATIME} {
				if sfs.Flags&f != 0 {
					flags |= uintptr(stToMs(f))
				}
			}
		}
		if err := unix.Mount("", m.Target, "", flags, ""); err != nil {
			return fmt.Errorf("remount %s read-only: %w", m.Target, err)
		}
	}
	return nil
}

func stToMs(f int64) int {
	switch f {
	case unix.ST_NOSUID:
		return unix.MS_NOSUID
	case unix.ST_NODEV:
		return unix.MS_NODEV
	case unix.ST_NOEXEC:
		return unix.MS_NOEXEC
	case unix.ST_NOATIME:
		return unix.MS_NOATIME
	case unix.ST_NODIRATIME:
		return unix.MS_NODIRATIME
	case unix.ST_RELATIME:
		return unix.MS_RELATIME
	}
	return 0
}

// ensureTarget creates a missing mount point (on the host file system: an
// empty directory or file is left behind there until the node stops; each
// created path is appended to createdLog).
func ensureTarget(target string, dir bool, createdLog string) error {
	st, err := os.Stat(target)
	if err == nil {
		if st.IsDir() != dir {
			if dir {
				return errors.New("exists and is not a directory")
			}
			return errors.New("exists and is a directory, source is a file")
		}
		return nil
	}
	if !os.IsNotExist(err) {
		return err
	}
	if dir {
		return mkdirAllLogged(target, createdLog)
	}
	if err := mkdirAllLogged(filepath.Dir(target), createdLog); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o644)
	if err != nil {
		if os.IsExist(err) {
			return nil
		}
		return err
	}
	logCreated(createdLog, target)
	return f.Close()
}

// mkdirAllLogged is os.MkdirAll that records each directory it created.
func mkdirAllLogged(dir string, createdLog string) error {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		missing = append(missing, d)
		if d == "/" || d == "." {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil {
			if os.IsExist(err) {
				continue
			}
			return err
		}
		logCreated(createdLog, missing[i])
	}
	// Symlinked parents (/var/run -> /run) are resolved by MkdirAll.
	return os.MkdirAll(dir, 0o755)
}

func logCreated(createdLog, path string) {
	if createdLog == "" {
		return
	}
	f, err := os.OpenFile(createdLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	_, _ = f.WriteString(path + "\n")
	_ = f.Close()
}

// RemoveCreated removes the empty directories and empty files listed in
// createdLog (deepest first) and then the log itself. It must only run
// when no container is running, as a directory may be a mount point in a
// container's namespace.
func RemoveCreated(createdLog string) (removed int) {
	b, err := os.ReadFile(createdLog)
	if err != nil {
		return 0
	}
	seen := map[string]bool{}
	var paths []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && filepath.IsAbs(l) && !seen[l] {
			seen[l] = true
			paths = append(paths, l)
		}
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for _, p := range paths {
		st, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if st.Mode().IsRegular() && st.Size() != 0 {
			continue
		}
		if st.IsDir() || st.Mode().IsRegular() {
			// os.Remove fails on non-empty directories, which are kept.
			if os.Remove(p) == nil {
				removed++
			}
		}
	}
	_ = os.Remove(createdLog)
	return removed
}

// hideMounts lazily unmounts, in this (private) mount namespace, every
// mount at or below one of prefixes.
func hideMounts(prefixes []string) {
	if len(prefixes) == 0 {
		return
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescape(fields[4])
		for _, p := range prefixes {
			p = filepath.Clean(p)
			if mp == p || strings.HasPrefix(mp, p+"/") {
				points = append(points, mp)
				break
			}
		}
	}
	// Deepest first.
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		_ = unix.Unmount(p, unix.MNT_DETACH)
	}
}

// unescape decodes mountinfo's octal escapes (\040 for space, ...).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
