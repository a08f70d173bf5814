package processor

// outbox is what an engine produced since the coordinator last drained
// it: score records, trending lists of the ticks it closed, and how far it
// got through the ticks. Only the engine writes it and only the
// coordinator reads it, never at the same time.
type outbox struct {
	bytes   []byte
	scores  []boxed
	reports []*Snapshot
	// partials: of an engine whose lists go to the partials topic, its
	// reports encoded as they were taken (values of that topic, spans of
	// bytes, with their tick as time), in place of reports.
	partials []boxed
	// creators: the creator likes of the ticks it closed (creators.go).
	creators []*creatorReport
	next     int64 // the partition's next tick (0: none yet)
	// msg is drain's message: one on the stack escaped, through the
	// sink, to the heap at each drain (2% of the live service's
	// allocations).
	msg Message
}

// boxed is a message whose key and value are spans of outbox.bytes.
type boxed struct {
	k0, k1, v0, v1 int
	time           int64
}

func (o *outbox) addScore(key string, value []byte, ts int64) {
	k0 := len(o.bytes)
	o.bytes = append(o.bytes, key...)
	v0 := len(o.bytes)
	o.bytes = append(o.bytes, value...)
	o.scores = append(o.scores, boxed{k0, v0, v0, len(o.bytes), ts})
}

// addPartial encodes a partition's report as a value of the partials
// topic: the ranking reuses the report's arrays at its next snapshot.
func (o *outbox) addPartial(id int32, s *Snapshot) {
	v0 := len(o.bytes)
	o.bytes = appendPartial(o.bytes, partialReport, id, s.Tick, s.Lists)
	o.partials = append(o.partials, boxed{v0: v0, v1: len(o.bytes), time: s.Tick})
}

// drain writes the score records to s and hands the reports to fn, then
// empties the box.
func (o *outbox) drain(s Sink, fn func(*Snapshot)) error {
	m := &o.msg
	for _, b := range o.scores {
		*m = Message{Key: o.bytes[b.k0:b.k1:b.k1], Value: o.bytes[b.v0:b.v1:b.v1], Time: b.time}
		if err := s.Write(m); err != nil {
			return err
		}
	}
	*m = Message{}
	o.scores = o.scores[:0]
	o.partials = o.partials[:0]
	o.bytes = o.bytes[:0]
	for _, r := range o.reports {
		if fn != nil {
			fn(r)
		}
	}
	clear(o.reports)
	o.reports = o.reports[:0]
	return nil
}
