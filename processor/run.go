package processor

import (
	"context"
	"errors"
	"io"
	"sync"

	"virality/event"
)

// RunOptions tune Run.
type RunOptions struct {
	// Decoders is the number of goroutines decoding JSON beside the one
	// applying events; 0 decodes on the reading goroutine.
	Decoders int
	// Progress, if set, is called on the engine's goroutine after each
	// batch of records. It must not keep the Stats map.
	Progress func(Stats)
}

// batch is a run of records with their own copy of the bytes, so that the
// source can read ahead while earlier batches are decoded and applied.
type batch struct {
	recs  []Record
	evs   []event.Event
	errs  []error
	arena []byte
	done  chan struct{}
}

// Run feeds a bounded or unbounded source through the engine: one goroutine
// reads, Decoders goroutines decode, and the calling goroutine applies in
// input order. Records before the engine's resume offset are skipped. At
// the end of a bounded source (io.EOF) it finishes the engine: final
// records and a last commit.
func Run(ctx context.Context, e *Engine, src Source, opts RunOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	const depth = 8
	free := make(chan *batch, depth+2)
	for range depth + 2 {
		free <- &batch{done: make(chan struct{}, 1)}
	}
	ordered := make(chan *batch, depth)
	work := make(chan *batch, depth)
	var readErr error
	var wg sync.WaitGroup

	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ordered)
		defer close(work)
		resume := e.NextOffset()
		var recs []Record
		for {
			var err error
			recs, err = src.Next(ctx, recs)
			if len(recs) > 0 {
				var b *batch
				select {
				case b = <-free:
				case <-ctx.Done():
					readErr = ctx.Err()
					return
				}
				b.fill(recs, resume)
				if opts.Decoders == 0 {
					b.decode()
				}
				ordered <- b
				if opts.Decoders > 0 {
					work <- b
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				return
			}
		}
	}()
	for range opts.Decoders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				b.decode()
			}
		}()
	}

	var applyErr error
	for b := range ordered {
		<-b.done
		if applyErr == nil {
			for i := range b.recs {
				if applyErr = e.Apply(ctx, &b.recs[i], &b.evs[i], b.errs[i]); applyErr != nil {
					cancel()
					break
				}
			}
			if applyErr == nil && opts.Progress != nil {
				opts.Progress(e.Stats())
			}
		}
		free <- b
	}
	wg.Wait()
	if applyErr != nil {
		return applyErr
	}
	if readErr != nil {
		if errors.Is(readErr, context.Canceled) {
			// Stopped on purpose: keep what was done, so a restart resumes.
			return errors.Join(readErr, e.Commit(context.WithoutCancel(ctx)))
		}
		return readErr
	}
	return e.Finish(ctx)
}

// fill copies the records at or after resume into the batch.
func (b *batch) fill(recs []Record, resume int64) {
	b.recs = b.recs[:0]
	b.arena = b.arena[:0]
	for i := range recs {
		if recs[i].Offset < resume {
			continue
		}
		b.arena = append(b.arena, recs[i].Key...)
		b.arena = append(b.arena, recs[i].Value...)
	}
	off := 0
	for i := range recs {
		r := recs[i]
		if r.Offset < resume {
			continue
		}
		r.Key = b.arena[off : off+len(r.Key) : off+len(r.Key)]
		off += len(r.Key)
		r.Value = b.arena[off : off+len(r.Value) : off+len(r.Value)]
		off += len(r.Value)
		b.recs = append(b.recs, r)
	}
	if cap(b.evs) < len(b.recs) {
		b.evs = make([]event.Event, len(b.recs))
		b.errs = make([]error, len(b.recs))
	}
	b.evs = b.evs[:len(b.recs)]
	b.errs = b.errs[:len(b.recs)]
}

func (b *batch) decode() {
	for i := range b.recs {
		b.errs[i] = event.Decode(b.recs[i].Value, b.recs[i].Time, &b.evs[i])
	}
	b.done <- struct{}{}
}
