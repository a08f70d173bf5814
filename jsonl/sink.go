package jsonl

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"unicode/utf8"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/processor"
)

// Format is the line format of a sink.
type Format int

const (
	// Lines writes each message's value as one line.
	Lines Format = iota
	// DeadLetters writes each message as one JSON object naming why it was
	// rejected and where it came from, with the original bytes:
	//
	//	{"reason":"bad_json","error":"...","topic":"in.jsonl","partition":0,"offset":17,"value":"..."}
	//
	// Original bytes that are not valid UTF-8 are written base64-encoded
	// as "value_base64" instead of "value".
	DeadLetters
)

// SinkOptions configure a Sink.
type SinkOptions struct {
	// Sync makes Flush wait for the file's data to reach stable storage.
	// Without it a flushed line survives a crash of the process but not of
	// the machine.
	Sync bool
}

// flushSize is how much a Sink buffers before writing.
const flushSize = 1 << 20

// ErrOutputChanged is returned by Restore when the output file is shorter
// than the position the state recorded: something else changed it.
var ErrOutputChanged = errors.New("jsonl: output changed since the state was saved")

// Sink writes messages as lines to a file or standard output.
//
// Writes are buffered and always handed to the file in whole lines, so
// that another writer of the same stream (progress lines on standard
// error) never lands inside a line. Position counts the bytes written up
// to the last Flush; Restore cuts a regular file back to such a position
// so that a restarted engine rewrites exactly what its state does not
// reflect. Standard output, pipes and devices cannot be cut back: after a
// crash and resume, their output may repeat records (never lose them).
type Sink struct {
	name     string
	w        io.Writer
	f        *os.File // nil for writers that are not files of ours
	closeF   bool     // the file was opened by CreateSink
	seekable bool     // a regular file: Restore truncates it
	format   Format
	sync     bool

	buf     []byte
	written int64 // bytes handed to buf since position 0
	pos     int64 // durable position after the last Flush
	err     error // sticky write error
	closed  bool
}

// CreateSink opens path ("-" for standard output) for writing in format.
// An existing file is not truncated here: the engine calls Restore with
// the committed position (0 on a fresh start), which cuts it.
func CreateSink(path string, format Format, opts SinkOptions) (*Sink, error) {
	if path == "-" {
		s := NewSink(os.Stdout, "standard output", format)
		s.f, s.sync = os.Stdout, opts.Sync
		return s, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("stat %s: %w", path, err), f.Close())
	}
	s := NewSink(f, path, format)
	s.f, s.closeF, s.sync = f, true, opts.Sync
	s.seekable = fi.Mode().IsRegular()
	return s, nil
}

// NewSink returns a sink writing to w, named name in errors. It cannot be
// restored: Restore does nothing.
func NewSink(w io.Writer, name string, format Format) *Sink {
	return &Sink{name: name, w: w, format: format, buf: make([]byte, 0, flushSize+64<<10)}
}

// Write buffers one message as a line.
func (s *Sink) Write(m *processor.Message) error {
	if s.err != nil {
		return s.err
	}
	n := len(s.buf)
	switch s.format {
	case DeadLetters:
		s.buf = appendDeadLetter(s.buf, m)
	default:
		s.buf = append(s.buf, m.Value...)
	}
	s.buf = append(s.buf, '\n')
	s.written += int64(len(s.buf) - n)
	if len(s.buf) >= flushSize {
		return s.writeOut()
	}
	return nil
}

// writeOut hands the buffered lines to the writer.
func (s *Sink) writeOut() error {
	if len(s.buf) == 0 || s.err != nil {
		return s.err
	}
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = fmt.Errorf("write %s: %w", s.name, err)
		return s.err
	}
	if cap(s.buf) > 4*flushSize {
		s.buf = make([]byte, 0, flushSize+64<<10) // let a huge line's buffer go
	} else {
		s.buf = s.buf[:0]
	}
	return nil
}

// Flush writes out the buffered lines and, with SinkOptions.Sync, waits
// for them to reach stable storage. Position then covers them.
func (s *Sink) Flush(ctx context.Context) error {
	if err := s.writeOut(); err != nil {
		return err
	}
	if s.sync && s.seekable {
		if err := s.f.Sync(); err != nil {
			s.err = fmt.Errorf("sync %s: %w", s.name, err)
			return s.err
		}
	}
	s.pos = s.written
	return nil
}

// Position returns the number of bytes written up to the last Flush.
func (s *Sink) Position() int64 { return s.pos }

// Restore cuts a regular file back to pos and continues writing there,
// dropping anything buffered. Other outputs cannot be cut back; Restore
// does nothing for them, so that after a crash they may repeat records.
func (s *Sink) Restore(pos int64) error {
	if s.closed {
		return s.err
	}
	s.buf = s.buf[:0]
	s.err = nil
	if !s.seekable {
		s.written, s.pos = pos, pos
		return nil
	}
	fi, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", s.name, err)
	}
	if fi.Size() < pos {
		return fmt.Errorf("%w: %s has %d bytes but the state says %d were written; "+
			"remove the state directory to start over, or restore the file", ErrOutputChanged, s.name, fi.Size(), pos)
	}
	if err := s.f.Truncate(pos); err != nil {
		return fmt.Errorf("truncate %s: %w", s.name, err)
	}
	if _, err := s.f.Seek(pos, io.SeekStart); err != nil {
		return fmt.Errorf("seek %s: %w", s.name, err)
	}
	if s.sync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", s.name, err)
		}
	}
	s.written, s.pos = pos, pos
	return nil
}

// Close flushes the sink and closes its file (never standard output).
func (s *Sink) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.Flush(context.Background())
	if s.closeF && s.f != nil {
		if cerr := s.f.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close %s: %w", s.name, cerr))
		}
		s.f = nil
	}
	s.err = fmt.Errorf("jsonl: %s: sink closed", s.name)
	return err
}

// appendDeadLetter appends m as one dead-letter JSON object.
func appendDeadLetter(b []byte, m *processor.Message) []byte {
	var reason, errText, topic, part, off []byte
	for _, h := range m.Headers {
		switch h.Key {
		case processor.HeaderReason:
			reason = h.Value
		case processor.HeaderError:
			errText = h.Value
		case processor.HeaderTopic:
			topic = h.Value
		case processor.HeaderPartition:
			part = h.Value
		case processor.HeaderOffset:
			off = h.Value
		}
	}
	b = append(b, `{"reason":`...)
	b = event.AppendString(b, string(reason))
	b = append(b, `,"error":`...)
	b = event.AppendString(b, string(errText))
	b = append(b, `,"topic":`...)
	b = event.AppendString(b, string(topic))
	b = append(b, `,"partition":`...)
	b = appendInt(b, part)
	b = append(b, `,"offset":`...)
	b = appendInt(b, off)
	if utf8.Valid(m.Value) {
		b = append(b, `,"value":`...)
		b = event.AppendString(b, string(m.Value))
	} else {
		b = append(b, `,"value_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, m.Value)
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendInt appends a header holding a decimal integer, or null when it
// is missing or not one.
func appendInt(b, v []byte) []byte {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, n, 10)
}

// Discard is a sink that drops every message, for outputs nobody asked
// for.
var Discard processor.Sink = discard{}

type discard struct{}

func (discard) Write(*processor.Message) error { return nil }
func (discard) Flush(context.Context) error    { return nil }

var (
	_ processor.Sink       = (*Sink)(nil)
	_ processor.Positioned = (*Sink)(nil)
)
