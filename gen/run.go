package gen

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// Run generates every line of c to w, each followed by '\n', through a
// buffer, and returns the bytes written.
func (c Config) Run(w io.Writer) (int64, error) {
	g, err := New(c)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	var n int64
	line := make([]byte, 0, 512)
	for {
		var ok bool
		line, _, ok = g.Next(line[:0])
		if !ok {
			break
		}
		line = append(line, '\n')
		m, err := bw.Write(line)
		n += int64(m)
		if err != nil {
			return n, fmt.Errorf("gen: write events: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("gen: write events: %w", err)
	}
	return n, nil
}

// WriteTruth writes t as JSON lines:
// {"kind":"burst","video_id":"vb3","start":..,"peak":..,"end":..,"likes":..,"accounts":..}
func WriteTruth(w io.Writer, t []Truth) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, x := range t {
		if err := enc.Encode(x); err != nil {
			return fmt.Errorf("gen: write truth: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("gen: write truth: %w", err)
	}
	return nil
}
