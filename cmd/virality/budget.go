package main

import (
	"flag"
	"fmt"
	"math/bits"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/store"
)

// memoryBudget is --memory-budget: the bytes a process that runs the
// engine (run, replay, backfill) may hold. It is shared, in fixed shares,
// by everything that grows with the input: the Go heap (under a soft limit,
// so that the garbage collector works harder rather than letting the heap
// double), the engine's caches of pairs, videos (and videos packed) and accounts, the filter
// of known pairs, the HTTP view of other instances' videos, and Pebble's
// block cache and memtables. A flag that sets one of those sizes wins over
// its share; GOMEMLIMIT, when set, wins over the heap's.
//
// The default, 512 MiB, keeps up with the live service at 5,000 likes/s
// from 1M accounts for 30 minutes on 2 cores shared with the broker, its
// RSS at 458-470 MiB, and holds a catch-up of 2M likes in 8 partitions
// within it. Until the popular
// videos' like times were held sealed (store/times.go) the live service
// fell behind at minute 21 under it and went above it, and the default was
// 1 GiB. A larger budget runs a backfill or a catch-up faster: the state
// then stays in the caches. A backfill of B1's 10M likes over 1M videos
// peaks at 428-472 MiB under 512 MiB, with the creators' state in its share
// and glibc's malloc held to one arena (malloc_cgo.go); without them, at
// 645-661 MiB (bench/RESULTS.md).
type memoryBudget struct{ bytes int64 }

const (
	defaultMemoryBudget = 512 << 20
	minMemoryBudget     = 128 << 20
	// runtimeBytes is what the process holds outside the Go heap and
	// Pebble: its code, goroutine stacks, the runtime's own structures.
	// The live service under 512 MiB ran at 505-521 MiB of RSS from minute
	// 22 of a 30-minute soak; with 56 MiB here (a heap limit 16 MiB lower)
	// at 468-523 MiB, with 37% more CPU: the heap's live data sits at its
	// soft limit either way, and a lower limit only makes the collector
	// work harder. With the creators' state held encoded and glibc's
	// malloc held to one arena (malloc_cgo.go; its arenas took 67-91 MiB
	// of B1's RSS, 20-22 MiB in one), the same soak ran at 458-470 MiB
	// (bench/RESULTS.md).
	runtimeBytes = 40 << 20
)

// Bytes each cached item takes on the Go heap, with its share of map and
// slice overhead, measured on generated traffic (bench/RESULTS.md): a
// video's record grows with its likes of the last day, so the engine holds
// the video cache to videoBytes a video on average, by its own estimate
// of each video's bytes.
const (
	pairBytes    = processor.PairBytes  // encoded, in a table without pointers (processor/paircache.go); 250 as a Go map of decoded pairs
	videoBytes   = processor.VideoBytes // the video cache is also held to this many bytes a video
	accountBytes = 138                  // a table without pointers (processor/table.go): 96-byte entries (the buckets an account liked in, up to 8), the key, the index; an account held whole counts as 4; and up to 8 bytes of the filters of the accounts let go (processor/leftaccounts.go)
	viewBytes    = 560
	recentBytes  = 530 // a slot of a score record and its video's ID (512 bytes) and its description
	heldBytes    = 300 // a like an account stage holds for weighing: its routed record, decoded event and keys (100,000 held 29 MB in a catch-up's heap profile)
)

// Shares of the Go heap's limit, in percent. They leave more than half
// of it to what no flag bounds one by one (batches read and being written,
// the reorder buffers, the outboxes, the rankings) and to the garbage
// collector's headroom: with the live heap close to the limit, the
// collector runs all the time (a soak with caches at 58% of the limit
// spent 60% of its CPU collecting).
const (
	pairShare = 4 // most pairs are new: the cache holds those changed since the commit, and few more
	// videoShare holds the videos being changed and the most used;
	// packedShare the videos the cache let go, packed at a few bytes a
	// like time (processor/packed.go), so that most of those taken again
	// are not read from the store. A video packed takes a fifth to a
	// tenth of its bytes in the cache, and taking it back costs a few
	// microseconds against a read of the store's tens. A larger share
	// (10%, with the accounts' at 14%) read no video back in a live
	// service under 512 MiB, but the heap it took made the collector
	// work more than the reads had cost (bench/RESULTS.md).
	videoShare   = 6
	packedShare  = 4
	accountShare = 16
	// creatorShare holds the creators' state the creator merger keeps
	// beside what it must (those changed since the last commit, and those
	// that may be listed as rising): most of it encoded, at a few hundred
	// bytes a creator. Unbounded, B1's 100,000 creators held 125 MB of a
	// backfill's heap under 512 MiB (bench/RESULTS.md). A backfill or a
	// replay also gives it liveShares: see plan.
	creatorShare = 4
	viewShare    = 4
	filterShare  = 4
	// recentShare: the last score records of the instance's own videos,
	// which the HTTP API answers with (service.Config's RecentScores);
	// 100,000 of them held 50 MB, unbudgeted, in a soak.
	recentShare = 2
	// inputShare bounds the input the live service holds read but not
	// yet applied (service.Config's InputMaxBytes). A soak that fell
	// behind with that input unbounded in total held 300 MB of it, a
	// third of the heap. At 6% a catch-up's heap sat at its limit: the
	// input took about 60 MB (the records' bytes, their 112-byte
	// descriptions in each fetcher's arrays, the batches), the collector
	// ran every 0.2 s and its write barriers were on most of the time. At
	// 3%, in two alternating pairs, the catch-up used 18% and 27% less CPU
	// a like, allocated 13-15% fewer bytes and ran half as many
	// collections or fewer: the engine, not the fetches, sets its pace
	// (bench/RESULTS.md).
	inputShare = 3
	// outputShare bounds the output records waiting while a flush or
	// commit is in flight (service.Config's OutputMaxBytes); as much may
	// be in the flight, and as much in the buffers it hands back. A soak
	// that fell behind with them unbounded held 160 MB of them, and 130 MB
	// with this share at 6%.
	outputShare = 2
	// heldShare bounds the likes the account stages hold for weighing
	// and could free without more input before the live service's input
	// waits (service.Config's MaxHeldEvents). A fixed 100,000 held 29 MB,
	// 8% of the heap, in a catch-up under 512 MiB.
	heldShare = 3
	// liveShares are those of what only the live service holds: its HTTP
	// view, its recent score records, and its input, output and likes in
	// flight.
	liveShares = viewShare + recentShare + inputShare + outputShare + heldShare
)

func addMemoryBudgetFlag(fs *flag.FlagSet, b *memoryBudget) {
	b.bytes = defaultMemoryBudget
	fs.Var(b, "memory-budget", "`BYTES` of memory the process may hold (e.g. 512MiB, 2GiB), shared by the Go heap, the\nengine's caches, the pair filter, the HTTP view and Pebble's block cache and memtables; a flag\nthat sets one of those wins over its share (0: no budget, each size its own default)")
}

func (b *memoryBudget) String() string {
	switch {
	case b == nil || b.bytes == 0:
		return "0"
	case b.bytes%(1<<30) == 0:
		return strconv.FormatInt(b.bytes>>30, 10) + "GiB"
	case b.bytes%(1<<20) == 0:
		return strconv.FormatInt(b.bytes>>20, 10) + "MiB"
	}
	return strconv.FormatInt(b.bytes, 10) + "B"
}

func (b *memoryBudget) Set(v string) error {
	n, err := parseBytes(v)
	if err != nil {
		return err
	}
	if n != 0 && n < minMemoryBudget {
		return fmt.Errorf("%s is below the smallest budget, %dMiB (0: no budget)", v, minMemoryBudget>>20)
	}
	b.bytes = n
	return nil
}

// parseBytes reads a size with a binary unit: B, KiB, MiB, GiB or TiB
// (K, M, G, T and KB, MB, GB, TB are read as the same binary units).
func parseBytes(v string) (int64, error) {
	s := strings.TrimSpace(v)
	if s == "0" {
		return 0, nil
	}
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	num, unit := s[:i], strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s[i:], "iB"), "B"))
	shift := map[string]uint{"": 0, "K": 10, "KI": 10, "M": 20, "G": 30, "T": 40}
	sh, ok := shift[unit]
	if s[i:] == "" {
		ok = false // a bare number: bytes or MiB? Say it.
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n < 0 || bits.Len64(uint64(n))+int(sh) > 62 {
		return 0, fmt.Errorf("%q: give a size with its unit, e.g. 512MiB or 2GiB", v)
	}
	return n << sh, nil
}

// memoryPlan is how a budget is shared.
type memoryPlan struct {
	heapLimit   int64 // Go heap soft limit (debug.SetMemoryLimit)
	cacheBytes  int64 // Pebble block cache
	memTable    int64 // each Pebble memtable (two may be held at once)
	pairs       int
	videos      int
	packed      int64 // bytes of videos kept packed
	creators    int64 // bytes of creators' state kept in memory beyond what must be
	decoded     int64 // of those, the bytes of creators kept decoded
	accounts    int
	viewVideos  int
	filterBits  int
	fetchBytes  int   // each fetch of a partition of the input
	inputBytes  int64 // the input held read but not yet applied (run)
	outputBytes int64 // the output waiting to be sent (run)
	recent      int   // videos whose last score record run keeps for the API
	held        int64 // likes the account stages may hold for weighing before the input waits (run)
}

// plan shares the budget; live says whether the command is the live
// service, with what only it holds (liveShares).
//
// A backfill or a replay gives liveShares to the creators' state instead,
// held encoded: those kept decoded stay within the live service's half of
// creatorShare. The creator merger was B1's largest reader of state after
// the videos: with 15.7 MiB, it read its 100,000 creators back from the
// store again and again (17 of 351 CPU s). With 39-40 MiB
// (--creator-state-mb) or 70 MiB (18%, this plan), B1's creator merger
// took 29 CPU s instead of 49, and B1 used less CPU in six of seven
// alternating pairs (-4% to -10%; +7.5% in one), with 5-9 MiB more peak
// RSS. Held decoded up to half of 39 MiB, B4's file over 1M videos
// (100,000 creators of 10 likes each) used about 3% more CPU; held as
// now, the same (bench/RESULTS.md).
//
// Without creator outputs a backfill or a replay computes no creators
// (noCreators, Config.NoCreators), and their share goes to the accounts.
// An account whose record a like needs is one that liked in the last 2
// hours and 20 minutes (accounts.go), and B1's 5M accounts, a like
// every 12 hours on average, have about 800,000 of those at a time; with
// the accounts' share alone the stages held at most 477,000 and read 1.05M
// accounts back from the store (14 us a read, 7% of B1's CPU). With the
// creators' share too, bound at 1.01M, they read 112,000 back, and B1
// used 10-14% less CPU in two alternating pairs, at a peak RSS lower by
// 14-16 MiB (the accounts held are those active, not the bound). Given to
// the packed videos instead, the share cost B1 18% more CPU
// (bench/RESULTS.md).
func (b memoryBudget) plan(live, noCreators bool) memoryPlan {
	var p memoryPlan
	// Memtables of 1/16 each, the block cache 1/32: a catch-up writes
	// most keys again within seconds (held likes set then deleted, videos,
	// accounts and creators rewritten at every commit), and a larger
	// memtable drops more of them before they reach a table. With 1/32
	// and 1/16 the other way round, compactions took a fifth of its CPU
	// and it ran 15-19% slower. Smaller memtables leave the heap more room
	// under a small budget, where the collector works all the time: under
	// 512 MiB, memtables of 1/64 ran a catch-up 1.5 times as fast, but the
	// live service at 5,000 likes/s then compacted ten times as many bytes
	// and took twice the CPU (bench/RESULTS.md).
	p.cacheBytes = max(b.bytes/32, 8<<20)
	p.memTable = max(b.bytes/16, 4<<20)
	p.heapLimit = b.bytes - p.cacheBytes - 2*p.memTable - runtimeBytes
	share := func(pct, each int64) int { return int(max(p.heapLimit*pct/100/each, 1000)) }
	p.pairs = share(pairShare, pairBytes)
	p.videos = share(videoShare, videoBytes)
	p.packed = p.heapLimit * packedShare / 100
	p.creators = p.heapLimit * creatorShare / 100
	p.decoded = p.creators / 2
	p.accounts = share(accountShare, accountBytes)
	p.viewVideos = share(viewShare, viewBytes)
	p.recent = share(recentShare, recentBytes)
	p.held = int64(share(heldShare, heldBytes))
	p.fetchBytes = int(min(max(b.bytes/1024, 256<<10), 16<<20))
	p.inputBytes = max(p.heapLimit*inputShare/100, 4<<20)
	p.outputBytes = max(p.heapLimit*outputShare/100, 4<<20)
	p.filterBits = int(p.heapLimit * filterShare / 100 * 8)
	if !live {
		if noCreators {
			p.creators, p.decoded = 0, 0
			p.accounts = share(accountShare+creatorShare+liveShares, accountBytes)
		} else {
			p.creators = p.heapLimit * (creatorShare + liveShares) / 100
		}
		// A backfill's or a replay's commits are larger than half a
		// memtable, and Pebble keeps such a batch as it is, on the Go
		// heap, until it is flushed, rather than copy it into a memtable:
		// the memtables stay mostly empty, and the heap holds the batches
		// instead. So memtables of 1/64 here, and what that frees goes
		// to the heap: two thirds to its room, which the caches' shares
		// above do not grow into. Under 512 MiB, B1's collector used
		// 36-44% less CPU, and B1 5% less on average over nine
		// alternating runs (290 against 306 CPU s), at a peak RSS of
		// 475-479 MiB instead of 428-435.
		//
		// The other third, and what halving the block cache frees, go to
		// the videos kept packed: the block cache holds blocks of 4 KiB,
		// of which a read back needs one record, while the arena of
		// packed videos holds only the videos let go. Under 512 MiB
		// (packed videos 40 MiB instead of 17, the block cache 8 MiB
		// instead of 32, the heap's room the same), B1 read its videos
		// back from the store for 12% of its CPU instead of 18%, and
		// used 1-5% less CPU in three alternating pairs
		// (bench/RESULTS.md).
		small, cache := max(b.bytes/64, 4<<20), max(b.bytes/64, 8<<20)
		memFreed, cacheFreed := 2*(p.memTable-small), p.cacheBytes-cache
		p.memTable, p.cacheBytes = small, cache
		p.packed += memFreed/3 + cacheFreed
		p.heapLimit += memFreed + cacheFreed
	}
	return p
}

// sizes are the flags a budget sizes: nil where the command has none.
type sizes struct {
	engine      *processor.Config
	cacheMB     *int
	memTableMB  *int
	viewVideos  *int
	fetchBytes  *int   // no flag: always its share
	inputBytes  *int64 // no flag: always its share
	outputBytes *int64 // no flag: always its share
	recent      *int   // no flag: always its share
	held        *int64 // no flag: always its share
}

// apply gives every size in s that no flag set (set: the flags given) its
// share of the budget. A zero budget changes nothing.
func (b memoryBudget) apply(set map[string]bool, s sizes) {
	if b.bytes == 0 {
		return
	}
	p := b.plan(s.inputBytes != nil, s.engine.NoCreators) // only the live service holds input read ahead
	for _, f := range []struct {
		name string
		ptr  *int
		v    int
	}{
		{"cache-pairs", &s.engine.CachePairs, p.pairs},
		{"cache-videos", &s.engine.CacheVideos, p.videos},
		{"max-accounts", &s.engine.MaxAccounts, p.accounts},
		{"pair-filter-bits", &s.engine.PairFilterBits, p.filterBits},
		{"cache-mb", s.cacheMB, int(p.cacheBytes >> 20)},
		{"memtable-mb", s.memTableMB, int(p.memTable >> 20)},
		{"http-view-videos", s.viewVideos, p.viewVideos},
		{"", s.fetchBytes, p.fetchBytes},
	} {
		if f.ptr != nil && !set[f.name] {
			*f.ptr = f.v
		}
	}
	if !set["packed-videos-mb"] {
		s.engine.PackedVideoBytes = p.packed
	}
	if !set["creator-state-mb"] {
		s.engine.CreatorBytes, s.engine.CreatorDecodedBytes = p.creators, p.decoded
	}
	if s.inputBytes != nil {
		*s.inputBytes = p.inputBytes
	}
	if s.outputBytes != nil {
		*s.outputBytes = p.outputBytes
	}
	if s.recent != nil {
		*s.recent = p.recent
	}
	if s.held != nil {
		*s.held = p.held
	}
}

// limitHeap holds the Go heap under the budget's share (live: of the
// live service, see plan), unless GOMEMLIMIT is set or there is no
// budget, until the returned function restores the limit before it.
func (b memoryBudget) limitHeap(live bool) (restore func()) {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok || b.bytes == 0 {
		return func() {}
	}
	prev := debug.SetMemoryLimit(b.plan(live, false).heapLimit) // the same with or without creators
	return func() { debug.SetMemoryLimit(prev) }
}

// addStoreFlags defines the flags of Pebble's memory.
func addStoreFlags(fs *flag.FlagSet, cacheMB, memTableMB *int) {
	fs.IntVar(cacheMB, "cache-mb", 64, "Pebble block cache `MiB` (with --memory-budget: 1/32 of it in run, 1/64 in backfill and replay)")
	fs.IntVar(memTableMB, "memtable-mb", 32, "`MiB` of each of Pebble's memtables, of which two may be full at once (with --memory-budget:\n1/16 of it in run, 1/64 in backfill and replay)")
}

// validateStore checks the store flags.
func validateStore(cacheMB, memTableMB int) error {
	switch {
	case cacheMB < 1 || cacheMB > 1<<20:
		return usagef("--cache-mb %d: must be between 1 and %d", cacheMB, 1<<20)
	case memTableMB < 1 || memTableMB > 4<<10:
		return usagef("--memtable-mb %d: must be between 1 and %d", memTableMB, 4<<10)
	}
	return nil
}

// storeOptions are Pebble's options for the sizes of the store flags (0:
// the store's default).
func storeOptions(cacheMB, memTableMB int) store.Options {
	opts := store.DefaultOptions()
	if cacheMB > 0 {
		opts.CacheBytes = int64(cacheMB) << 20
	}
	if memTableMB > 0 {
		opts.MemTableBytes = uint64(memTableMB) << 20
	}
	return opts
}

// setFlags returns the flags of fs given on the command line or by
// environment variable.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}
