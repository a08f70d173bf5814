// Package jsonl reads and writes JSON-lines files as processor sources and
// sinks, for backfills that need no broker: one record per line in, one
// record per line out.
package jsonl

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/viralityhq/virality/processor"
)

const (
	// blockSize is the size of each read: large reads keep the per-line
	// cost down to scanning for '\n'.
	blockSize = 1 << 20
	// MaxLineBytes bounds a line. A longer line is returned cut to this
	// length (and then fails to decode downstream) rather than growing the
	// buffer without bound.
	MaxLineBytes = 64 << 20
	// maxBatch bounds the records returned by one call of Next.
	maxBatch = 4096
)

// Source reads JSON-lines files, in the order given, as one input stream:
// the files are one partition whose offsets count the non-blank lines
// across all of them. A file starting with the gzip magic bytes is
// decompressed; "-" is standard input.
//
// Next returns records that point into the source's block buffer. Lines
// never straddle a call's boundary inside that buffer: a partial last line
// is moved to the front of the buffer at the start of the next call, which
// is why the records of one call stay valid only until the next.
type Source struct {
	inputs []*input
	cur    int // index of the input being read

	buf        []byte // buf[start:end] holds data not yet returned
	start, end int
	eof        bool // the current input is exhausted; buf[start:end] is its tail
	skipping   bool // discarding the rest of a line cut at MaxLineBytes

	offset  int64 // offset of the next record
	read    atomic.Int64
	records atomic.Int64 // s.offset, for other goroutines
	total   int64
}

// input is one file of the stream.
type input struct {
	path  string
	f     *os.File
	stdin bool
	r     io.Reader // the decompressed bytes; nil until the input is reached
	gz    *gzip.Reader
}

// OpenSource opens the files at paths ("-" for standard input) to be read
// in order. Opening a missing file is an error; a file that is not a
// regular file (or standard input) makes the total size unknown.
func OpenSource(paths []string) (*Source, error) {
	s := &Source{buf: make([]byte, blockSize)}
	var total int64
	for _, p := range paths {
		in := &input{path: p}
		if p == "-" {
			in.f, in.stdin = os.Stdin, true
			total = -1
		} else {
			f, err := os.Open(p)
			if err != nil {
				return nil, errors.Join(err, s.Close())
			}
			in.f = f
			fi, err := f.Stat()
			if err != nil {
				return nil, errors.Join(fmt.Errorf("stat %s: %w", p, err), f.Close(), s.Close())
			}
			if total >= 0 && fi.Mode().IsRegular() {
				total += fi.Size()
			} else {
				total = -1
			}
		}
		s.inputs = append(s.inputs, in)
	}
	s.total = total
	return s, nil
}

// BytesRead returns the raw bytes read so far from the files (compressed
// bytes for gzip input). It may be called from any goroutine.
func (s *Source) BytesRead() int64 { return s.read.Load() }

// Records returns the number of records returned so far. It may be called
// from any goroutine; with BytesRead it tells how far into the input a
// consumer that is behind the source has got.
func (s *Source) Records() int64 { return s.records.Load() }

// TotalBytes returns the summed size of the files, or -1 when it is not
// known (standard input, pipes, devices).
func (s *Source) TotalBytes() int64 { return s.total }

// Close closes the files. Standard input is left open.
func (s *Source) Close() error {
	var errs []error
	for _, in := range s.inputs {
		if in.gz != nil {
			errs = append(errs, in.gz.Close())
			in.gz = nil
		}
		if in.f != nil && !in.stdin {
			if err := in.f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", in.path, err))
			}
		}
		in.f = nil
	}
	return errors.Join(errs...)
}

// Next returns up to 4096 records, appended to buf[:0], and io.EOF after
// the last record of the last file.
func (s *Source) Next(ctx context.Context, buf []processor.Record) ([]processor.Record, error) {
	buf = buf[:0]
	if err := ctx.Err(); err != nil {
		return buf, err
	}
	defer func() { s.records.Store(s.offset) }()
	s.compact()
	for len(buf) < maxBatch {
		if s.cur >= len(s.inputs) {
			if len(buf) > 0 {
				return buf, nil
			}
			return buf, io.EOF
		}
		in := s.inputs[s.cur]
		data := s.buf[s.start:s.end]
		i := bytes.IndexByte(data, '\n')
		if i >= 0 {
			s.start += i + 1
			if s.skipping {
				s.skipping = false
				continue
			}
			buf = s.appendLine(buf, in.path, data[:i])
			continue
		}
		// No complete line is buffered.
		if s.skipping {
			s.start = s.end
		}
		if s.eof {
			// The last line of a file needs no '\n'.
			if s.start < s.end {
				buf = s.appendLine(buf, in.path, data[:min(len(data), MaxLineBytes)])
			}
			s.start, s.end, s.eof, s.skipping = 0, 0, false, false
			s.cur++
			continue
		}
		if s.end-s.start >= MaxLineBytes {
			buf = s.appendLine(buf, in.path, data[:MaxLineBytes])
			s.start, s.skipping = s.end, true
			continue
		}
		if len(buf) > 0 {
			// Reading more would move the bytes the records point to.
			return buf, nil
		}
		if err := s.fill(in); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// appendLine adds line as a record unless it is blank.
func (s *Source) appendLine(buf []processor.Record, path string, line []byte) []processor.Record {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if blank(line) {
		return buf
	}
	buf = append(buf, processor.Record{Value: line, Topic: path, Offset: s.offset})
	s.offset++
	return buf
}

// blank reports whether line holds only JSON whitespace.
func blank(line []byte) bool {
	for _, c := range line {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// compact moves the unread tail of the buffer to its front, now that the
// records of the previous call are no longer in use, and gives back a
// buffer grown for a long line.
func (s *Source) compact() {
	if s.start == 0 {
		return
	}
	n := s.end - s.start
	if cap(s.buf) > blockSize && n <= blockSize/2 {
		nb := make([]byte, blockSize)
		copy(nb, s.buf[s.start:s.end])
		s.buf = nb
	} else {
		copy(s.buf, s.buf[s.start:s.end])
	}
	s.start, s.end = 0, n
}

// fill reads more of the current input into the buffer, growing it when a
// partial line fills it, and marks the input's end.
func (s *Source) fill(in *input) error {
	if s.start > 0 {
		s.compact()
	}
	if s.end == len(s.buf) {
		n := min(2*len(s.buf), MaxLineBytes+blockSize)
		nb := make([]byte, n)
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	if in.r == nil {
		if err := s.openInput(in); err != nil {
			return err
		}
	}
	// Fill the free space (up to one block at a time, so a huge buffer
	// is not filled past what the line needs).
	// A truncated gzip stream reports io.ErrUnexpectedEOF, which must
	// stay an error: only io.EOF ends an input.
	limit := min(len(s.buf), s.end+blockSize)
	for s.end < limit {
		n, err := in.r.Read(s.buf[s.end:limit])
		s.end += n
		if err == io.EOF {
			s.eof = true
			s.finishInput(in)
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", in.path, err)
		}
	}
	return nil
}

// openInput starts reading in, detecting gzip by its magic bytes.
func (s *Source) openInput(in *input) error {
	br := bufio.NewReaderSize(&countingReader{r: in.f, n: &s.read}, 256<<10)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", in.path, err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("read %s: %w", in.path, err)
		}
		in.gz, in.r = gz, gz
		return nil
	}
	in.r = br
	return nil
}

// finishInput releases an input read to its end.
func (s *Source) finishInput(in *input) {
	if in.gz != nil {
		in.gz.Close()
		in.gz = nil
	}
	if in.f != nil && !in.stdin {
		in.f.Close()
		in.f = nil
	}
	in.r = eofReader{}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// countingReader counts the raw bytes read from a file.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

var _ processor.Source = (*Source)(nil)
