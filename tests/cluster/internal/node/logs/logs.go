// Package logs writes container output in the CRI log format
// ("<RFC3339Nano> <stdout|stderr> <F|P> <text>", one file per container
// run) and reads it back for the kubelet log endpoint (tailLines,
// sinceTime, timestamps, limitBytes, follow).
package logs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// MaxLine is the longest chunk written as one record; longer lines are
// split into partial (P) records.
const MaxLine = 16 * 1024

// Writer serializes records of several streams into one file.
type Writer struct {
	mu sync.Mutex
	f  *os.File
	wg sync.WaitGroup
}

// NewWriter creates (truncates) path.
func NewWriter(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	return &Writer{f: f}, nil
}

// Copy reads r until EOF in the background, writing records for stream.
func (w *Writer) Copy(r io.ReadCloser, stream string) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer r.Close()
		br := bufio.NewReaderSize(r, MaxLine)
		for {
			line, err := br.ReadSlice('\n')
			if len(line) > 0 {
				tag := "P"
				if line[len(line)-1] == '\n' {
					tag = "F"
					line = line[:len(line)-1]
				}
				w.record(stream, tag, line)
			}
			if err != nil {
				if errors.Is(err, bufio.ErrBufferFull) {
					continue
				}
				return
			}
		}
	}()
}

func (w *Writer) record(stream, tag string, line []byte) {
	var b bytes.Buffer
	b.Grow(len(line) + 48)
	b.WriteString(time.Now().UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(line)
	b.WriteByte('\n')
	w.mu.Lock()
	_, _ = w.f.Write(b.Bytes())
	w.mu.Unlock()
}

// Wait waits for every stream to reach EOF, up to timeout, then closes the
// file. It reports whether all streams finished.
func (w *Writer) Wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	ok := true
	select {
	case <-done:
	case <-time.After(timeout):
		ok = false
	}
	w.mu.Lock()
	_ = w.f.Close()
	w.mu.Unlock()
	return ok
}

// Record is one parsed line.
type Record struct {
	Time    time.Time
	RawTime []byte
	Stream  []byte
	Partial bool
	Text    []byte
}

// Parse parses one record (without the trailing newline).
func Parse(line []byte) (Record, bool) {
	var r Record
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return r, false
	}
	r.RawTime = line[:i]
	t, err := time.Parse(time.RFC3339Nano, string(r.RawTime))
	if err != nil {
		return r, false
	}
	r.Time = t
	rest := line[i+1:]
	j := bytes.IndexByte(rest, ' ')
	if j < 0 {
		return r, false
	}
	r.Stream = rest[:j]
	rest = rest[j+1:]
	if len(rest) < 1 {
		return r, false
	}
	r.Partial = rest[0] == 'P'
	if len(rest) >= 2 {
		r.Text = rest[2:]
	}
	return r, true
}

// Options of a read.
type Options struct {
	Follow     bool
	TailLines  *int64
	LimitBytes *int64
	SinceTime  *time.Time
	Timestamps bool
	// Active reports whether the file is still being written (for follow).
	Active func() bool
	Poll   time.Duration
}

// Read writes the log at path to out according to opt.
func Read(ctx context.Context, path string, out io.Writer, opt Options) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	start := int64(0)
	if opt.TailLines != nil {
		start, err = tailOffset(f, *opt.TailLines)
		if err != nil {
			return err
		}
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return err
	}
	remaining := int64(-1)
	if opt.LimitBytes != nil {
		remaining = *opt.LimitBytes
	}
	poll := opt.Poll
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	flusher, _ := out.(interface{ Flush() })
	br := bufio.NewReaderSize(f, 64*1024)
	var pending []byte
	atLineStart := true
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			pending = append(pending, chunk...)
			continue
		}
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			line := append(pending, chunk[:len(chunk)-1]...)
			pending = nil
			rec, ok := Parse(line)
			if ok && (opt.SinceTime == nil || !rec.Time.Before(*opt.SinceTime)) {
				var b []byte
				if opt.Timestamps && atLineStart {
					b = append(b, rec.RawTime...)
					b = append(b, ' ')
				}
				b = append(b, rec.Text...)
				if !rec.Partial {
					b = append(b, '\n')
				}
				atLineStart = !rec.Partial
				if remaining >= 0 && int64(len(b)) > remaining {
					b = b[:remaining]
				}
				if len(b) > 0 {
					if _, werr := out.Write(b); werr != nil {
						return werr
					}
				}
				if remaining >= 0 {
					remaining -= int64(len(b))
					if remaining <= 0 {
						return nil
					}
				}
			}
			continue
		}
		// Incomplete last line: keep it and wait for more (or stop).
		pending = append(pending, chunk...)
		if err == nil {
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		if !opt.Follow {
			return nil
		}
		if flusher != nil {
			flusher.Flush()
		}
		active := opt.Active != nil && opt.Active()
		if !active {
			// Drain whatever was written before the writer closed.
			more, _ := io.ReadAll(br)
			if len(more) == 0 {
				return nil
			}
			br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(more), f), 64*1024)
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
		br.Reset(f)
	}
}

// tailOffset finds the offset of the start of the last n complete records.
func tailOffset(f *os.File, n int64) (int64, error) {
	if n < 0 {
		return 0, nil
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if n == 0 {
		return size, nil
	}
	const block = 32 * 1024
	buf := make([]byte, block)
	var count int64
	pos := size
	// Ignore a trailing newline at the very end.
	first := true
	for pos > 0 {
		readSize := int64(block)
		if pos < readSize {
			readSize = pos
		}
		pos -= readSize
		if _, err := f.ReadAt(buf[:readSize], pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := readSize - 1; i >= 0; i-- {
			if buf[i] != '\n' {
				continue
			}
			if first && pos+i == size-1 {
				first = false
				continue
			}
			first = false
			count++
			if count == n {
				return pos + i + 1, nil
			}
		}
	}
	return 0, nil
}

// Tail returns the text of the last maxLines lines, at most maxBytes
// (the end is kept), for FallbackToLogsOnError.
func Tail(path string, maxLines int64, maxBytes int) string {
	var b bytes.Buffer
	_ = Read(context.Background(), path, &b, Options{TailLines: &maxLines})
	s := b.Bytes()
	if len(s) > maxBytes {
		s = s[len(s)-maxBytes:]
	}
	return string(s)
}
