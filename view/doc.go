// Package view is a read-only, in-memory view of virality's output topics
// for rankers and other services that need a video's latest score, or a
// region's latest trending list, without a network round trip per
// request.
//
// Open reads every partition of the compacted scores topic (video-scores)
// and of the trending topic from their first offsets up to the end offsets
// listed when Open was called (the bootstrap), then keeps following them,
// one goroutine per partition, until Close. Ready reports, and WaitReady
// waits for, the end of the bootstrap: from then on the view holds at
// least what the topics held when Open was called. FollowScores(false)
// stops reading the scores topic until FollowScores(true), which reads on
// from where it stopped (the live service does so while it answers for
// every video itself).
//
// Reads never do I/O: Get looks a video up in a map guarded by a
// sync.RWMutex, Top returns the newest list of a region. Any number of
// goroutines may read while the partitions are applied.
//
// # Which record wins
//
// For each video the view keeps the record with the highest seq. A record
// whose seq is not above the held one (a repeat written again after a
// producer retry, or an older record read again after a restart) is
// ignored, so a video never moves back. A tombstone (a record with a key
// and no value, as compaction leaves for deleted keys) removes the video.
// For each region the view keeps the list of the newest tick (ts); of two
// lists of the same tick the one read last wins (the service writes a
// tick again only as an identical repeat).
//
// # Memory
//
// A video costs about 230 bytes plus the length of its id plus the
// allocation of its raw JSON record (about 300 bytes as the service
// writes it): the Score (176 bytes: 7 counts, 6 floats, ts, seq, the id
// and model strings and the raw slice), the entry's heap index, its
// pointer in the eviction heap (8 bytes), and the map's key and slot. The
// model string is shared by all videos. BENCH.md has the measured figure:
// 564.5 bytes per video for 8-byte ids, so one million videos (the default
// MaxVideos) take about 0.53 GiB.
//
// The number of videos held is bounded by Config.MaxVideos. When applying
// a record would hold more, the videos with the oldest ts (event time of
// their latest record) are dropped until MaxVideos remain; ties are broken
// arbitrarily. A dropped video comes back with its next record, or, after a
// restart of a partition, with whatever record of it is read next (which
// may then be older than the one dropped). Trending lists are not bounded
// by MaxVideos: one list is held per region.
//
// # Failures
//
// A partition whose fetches fail keeps retrying until Close (kafkaio
// retries with backoff for 30s, then the view every second); Err returns
// the newest failure of the partitions still failing, nil once all read.
// When the offset to read is gone (retention, a recreated topic), the
// partition is read again from its first offset (Stats.Rereads); the
// records read before stay. Records whose value is not a valid JSON
// record are skipped and counted (Stats.Invalid). Staleness tells how far
// behind the view may be.
package view
