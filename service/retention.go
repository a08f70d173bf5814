package service

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/viralityhq/virality/kafkaio"
)

// Policies of Config.OnOffsetOutOfRange: what the service does when the
// next offset of a partition it reads is gone, deleted by retention (or a
// DeleteRecords) before it was read.
const (
	// OutOfRangeEarliest resumes at the first offset the partition still
	// holds. The records in between are lost, loudly: a warning in the log
	// with the range, and records_lost_to_retention_total.
	OutOfRangeEarliest = "earliest"
	// OutOfRangeFail stops the service with an error that names the
	// partition and the range.
	OutOfRangeFail = "fail"
)

// problemRetention is the readiness part (see Ready) of the partitions
// whose next offset is gone and that are not reading again yet.
const problemRetention = "retention"

// stopError is a fetch error that stops the service: the loop returns it
// instead of retrying.
type stopError struct {
	msg string
	err error
}

func (e *stopError) Error() string { return e.msg }
func (e *stopError) Unwrap() error { return e.err }

// stopsService reports whether a fetch error must stop the service.
func stopsService(err error) bool {
	var se *stopError
	return errors.As(err, &se)
}

// offsetGone deals with a fetch of topic's partition p that found its
// next offset out of the partition's range, per Config.OnOffsetOutOfRange.
// It returns nil when src was moved to the first offset the partition
// holds (the skipped records are logged and counted); else the error to
// pass on: a *stopError under the fail policy, or oor itself while the
// range could not be listed or the offset is not behind it (which
// retention cannot explain: the fetch is retried). warned limits the
// error log of the latter to once per stall.
//
// Jumping forward is safe for the processor: its routers take each
// record's offset as given and skip only records before their offset,
// so the records in between are simply never seen, as retention meant.
func (s *Service) offsetGone(topic string, p int32, src *kafkaio.PartitionSource, oor *kafkaio.OffsetOutOfRangeError, warned *bool) error {
	s.setStuck(topic, p, oor.Error())
	if oor.First < 0 || oor.Offset >= oor.First {
		if oor.First >= 0 && oor.End >= 0 && oor.Offset > oor.End {
			// Ahead of the end: the topic was recreated or truncated.
			// Going back would not help: the processor skips offsets it
			// has taken.
			if s.cfg.OnOffsetOutOfRange == OutOfRangeFail {
				return &stopError{err: oor, msg: fmt.Sprintf(
					"partition %d of %s: the next offset to read, %d, is past the end of the partition, which holds offsets %d to %d (the topic was recreated or truncated); --on-offset-out-of-range=fail: stopping",
					p, topic, oor.Offset, oor.First, oor.End-1)}
			}
			if !*warned {
				*warned = true
				s.log.Error().Str("topic", topic).Int32("partition", p).Int64("offset", oor.Offset).
					Int64("first", oor.First).Int64("end", oor.End).
					Msg("the next offset to read is past the end of the partition (topic recreated or truncated?): not reading it, not ready")
			}
		} else if oor.First < 0 && !*warned {
			*warned = true
			s.log.Warn().Str("topic", topic).Int32("partition", p).Int64("offset", oor.Offset).
				Msg("the next offset to read is out of range and the partition's range could not be listed: retrying, not ready")
		}
		return oor
	}
	from, to, lost := oor.Offset, oor.First-1, oor.First-oor.Offset
	if s.cfg.OnOffsetOutOfRange == OutOfRangeFail {
		s.log.Error().Str("topic", topic).Int32("partition", p).Int64("from", from).Int64("to", to).Int64("count", lost).
			Int64("first", oor.First).Int64("end", oor.End).
			Msg("records deleted by retention before they were read; --on-offset-out-of-range=fail: stopping")
		return &stopError{err: oor, msg: fmt.Sprintf(
			"partition %d of %s: offsets %d to %d (%d records) were deleted by retention before they were read; the partition holds offsets %d to %d; --on-offset-out-of-range=fail: stopping (earliest would resume at offset %d and lose them)",
			p, topic, from, to, lost, oor.First, oor.End-1, oor.First)}
	}
	if err := src.SetOffset(oor.First); err != nil {
		return err
	}
	s.log.Warn().Str("topic", topic).Int32("partition", p).Int64("from", from).Int64("to", to).Int64("count", lost).
		Int64("resume_at", oor.First).
		Msg("records deleted by retention before they were read: lost; resuming at the first offset the partition holds")
	if topic != s.cfg.PartialsTopic() {
		// Likes of the partition, from the input or from its share of
		// the repartition topic.
		s.m.AddLostToRetention(p, lost)
	}
	*warned = false
	return nil
}

// setStuck records (why != "") or clears that topic's partition p cannot
// read its next offset. Ready reads the first of them as problem
// "retention".
func (s *Service) setStuck(topic string, p int32, why string) {
	key := fmt.Sprintf("%s %s/%d", problemRetention, topic, p)
	s.readyMu.Lock()
	if why == "" {
		delete(s.problems, key)
	} else {
		s.problems[key] = why
	}
	var keys []string
	for k := range s.problems {
		if strings.HasPrefix(k, problemRetention+" ") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	switch len(keys) {
	case 0:
		delete(s.problems, problemRetention)
	case 1:
		s.problems[problemRetention] = s.problems[keys[0]]
	default:
		s.problems[problemRetention] = fmt.Sprintf("%s (and %d more partitions)", s.problems[keys[0]], len(keys)-1)
	}
	s.readyMu.Unlock()
	s.publishReady()
}
