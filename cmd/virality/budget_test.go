package main

import (
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "512MiB": 512 << 20, "2GiB": 2 << 30, "2G": 2 << 30, "300MB": 300 << 20,
		"64KiB": 64 << 10, "1TiB": 1 << 40, "4096B": 4096, " 1GiB ": 1 << 30,
	} {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "512", "MiB", "-1MiB", "1.5GiB", "12XB", "9999999999TiB"} {
		if n, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, n)
		}
	}
}

// TestMemoryPlan: the shares of a budget add up to less than it, and grow
// with it.
func TestMemoryPlan(t *testing.T) {
	var prev memoryPlan
	for _, b := range []int64{128 << 20, 512 << 20, 4 << 30} {
		p := memoryBudget{b}.plan(true, false)
		caches := int64(p.pairs)*pairBytes + int64(p.videos)*videoBytes + int64(p.accounts)*accountBytes +
			int64(p.viewVideos)*viewBytes + int64(p.filterBits)/8 + p.packed + p.creators +
			int64(p.recent)*recentBytes + p.inputBytes + p.outputBytes + p.held*heldBytes
		if caches >= p.heapLimit*2/3 {
			t.Errorf("budget %d: caches take %d of a heap limit of %d, leaving too little for the rest", b, caches, p.heapLimit)
		}
		// A backfill or a replay gives the creators what only the live
		// service holds; it gives what smaller memtables and a smaller
		// block cache free to the heap, some of it to the videos kept
		// packed, and leaves the heap at least the live service's room.
		bp := memoryBudget{b}.plan(false, false)
		if bp.creators <= p.creators || bp.heapLimit <= p.heapLimit || bp.cacheBytes > p.cacheBytes || bp.memTable >= p.memTable || bp.packed <= p.packed {
			t.Errorf("budget %d: a batch command's creators %d, heap limit %d, cache %d, memtable %d, packed %d; live %d, %d, %d, %d, %d",
				b, bp.creators, bp.heapLimit, bp.cacheBytes, bp.memTable, bp.packed, p.creators, p.heapLimit, p.cacheBytes, p.memTable, p.packed)
		}
		if bp.pairs != p.pairs || bp.videos != p.videos || bp.accounts != p.accounts || bp.filterBits != p.filterBits {
			t.Errorf("budget %d: a batch command's caches %+v differ from the live service's %+v", b, bp, p)
		}
		// Without creators, their share goes to the accounts: the caches
		// take no more of the heap.
		np := memoryBudget{b}.plan(false, true)
		if np.creators != 0 || np.heapLimit != bp.heapLimit || np.packed != bp.packed ||
			int64(np.accounts-bp.accounts-1)*accountBytes > bp.creators || np.accounts <= bp.accounts {
			t.Errorf("budget %d: without creators, accounts %d, creators %d, heap limit %d; with them %d, %d, %d",
				b, np.accounts, np.creators, np.heapLimit, bp.accounts, bp.creators, bp.heapLimit)
		}
		if total := bp.heapLimit + bp.cacheBytes + 2*bp.memTable + runtimeBytes; total != b {
			t.Errorf("budget %d: a batch command's parts add up to %d", b, total)
		}
		batch := caches - int64(p.viewVideos)*viewBytes - int64(p.recent)*recentBytes - p.inputBytes - p.outputBytes - p.held*heldBytes -
			p.creators + bp.creators - p.packed + bp.packed
		if bp.heapLimit-batch < p.heapLimit-caches {
			t.Errorf("budget %d: a batch command's caches take %d of %d, the live service's %d of %d", b, batch, bp.heapLimit, caches, p.heapLimit)
		}
		if total := p.heapLimit + p.cacheBytes + 2*p.memTable + runtimeBytes; total != b {
			t.Errorf("budget %d: the parts add up to %d", b, total)
		}
		if p.pairs <= prev.pairs || p.videos <= prev.videos || p.accounts <= prev.accounts || p.held <= prev.held || p.heapLimit <= prev.heapLimit ||
			p.filterBits <= prev.filterBits {
			t.Errorf("budget %d: %+v does not grow from %+v", b, p, prev)
		}
		prev = p
	}
}

// TestMemoryBudgetFlags: the budget sizes what no flag sets, a flag wins
// over its share, a budget of 0 leaves every default, and a bad budget is
// refused with what to give.
func TestMemoryBudgetFlags(t *testing.T) {
	f, err := parseRun([]string{"--memory-budget", "1GiB", "--cache-pairs", "12345"})
	if err != nil {
		t.Fatal(err)
	}
	p := memoryBudget{1 << 30}.plan(true, false)
	if f.svc.Engine.CachePairs != 12345 {
		t.Errorf("--cache-pairs 12345 gave %d", f.svc.Engine.CachePairs)
	}
	if f.svc.Engine.CacheVideos != p.videos || f.svc.Engine.MaxAccounts != p.accounts || f.viewVideos != p.viewVideos ||
		f.cacheMB != int(p.cacheBytes>>20) || f.memTableMB != int(p.memTable>>20) ||
		f.svc.InputMaxBytes != p.inputBytes || f.svc.OutputMaxBytes != p.outputBytes || f.svc.MaxHeldEvents != p.held {
		t.Errorf("sizes %+v, cache %d MiB, memtable %d MiB, view %d: want the plan %+v",
			f.svc.Engine, f.cacheMB, f.memTableMB, f.viewVideos, p)
	}

	// A backfill gives the creators what only the live service holds;
	// --creator-state-mb wins over it.
	bf, err := parseBackfill([]string{"--memory-budget", "1GiB", "--creators-out", "c.jsonl", "in.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	bp := memoryBudget{1 << 30}.plan(false, false)
	if bf.cfg.CreatorBytes != bp.creators || f.svc.Engine.CreatorBytes != p.creators || bp.creators <= p.creators {
		t.Errorf("creators' state: backfill %d, run %d; want %d and %d", bf.cfg.CreatorBytes, f.svc.Engine.CreatorBytes, bp.creators, p.creators)
	}
	// Smaller memtables and block cache, as the batch plan has them.
	if bf.memTableMB != int(bp.memTable>>20) || bf.cacheMB != int(bp.cacheBytes>>20) || bf.memTableMB >= f.memTableMB {
		t.Errorf("backfill: memtables %d MiB, cache %d MiB; want %d and %d (run: %d, %d)", bf.memTableMB, bf.cacheMB, bp.memTable>>20, bp.cacheBytes>>20, f.memTableMB, f.cacheMB)
	}
	// Held decoded: the live service's half of its share, in both.
	if bf.cfg.CreatorDecodedBytes != p.creators/2 || f.svc.Engine.CreatorDecodedBytes != p.creators/2 {
		t.Errorf("creators held decoded: backfill %d, run %d; want %d", bf.cfg.CreatorDecodedBytes, f.svc.Engine.CreatorDecodedBytes, p.creators/2)
	}
	if bf, err = parseBackfill([]string{"--memory-budget", "1GiB", "--creator-state-mb", "7", "--creators-out", "c.jsonl", "in.jsonl"}); err != nil || bf.cfg.CreatorBytes != 7<<20 {
		t.Errorf("--creator-state-mb 7 gave %d bytes (%v)", bf.cfg.CreatorBytes, err)
	}
	// Without creator outputs, no creators: their share goes to the
	// accounts, in a backfill and in a replay alike; --max-accounts wins.
	np := memoryBudget{1 << 30}.plan(false, true)
	bf, err = parseBackfill([]string{"--memory-budget", "1GiB", "in.jsonl"})
	if err != nil || !bf.cfg.NoCreators || bf.cfg.CreatorBytes != 0 || bf.cfg.MaxAccounts != np.accounts || np.accounts <= bp.accounts {
		t.Errorf("backfill without creators: %v, creators' state %d, accounts %d; want none and %d (with creators %d)", err, bf.cfg.CreatorBytes, bf.cfg.MaxAccounts, np.accounts, bp.accounts)
	}
	rp, err := parseReplay([]string{"--memory-budget", "1GiB", "--out", "s.jsonl", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-01T01:00:00Z", "--brokers", "x:1", "--input-topic", "t"})
	if err != nil {
		t.Fatal(err)
	}
	if !rp.cfg.NoCreators || rp.cfg.MaxAccounts != np.accounts {
		t.Errorf("replay without creators: accounts %d; want %d", rp.cfg.MaxAccounts, np.accounts)
	}
	if bf, err = parseBackfill([]string{"--memory-budget", "1GiB", "--max-accounts", "1234", "in.jsonl"}); err != nil || bf.cfg.MaxAccounts != 1234 {
		t.Errorf("--max-accounts 1234 without creators gave %d (%v)", bf.cfg.MaxAccounts, err)
	}

	f, err = parseRun([]string{"--memory-budget", "0"})
	if err != nil {
		t.Fatal(err)
	}
	if f.svc.Engine.CachePairs != 1_000_000 || f.cacheMB != 64 || f.memTableMB != 32 || f.viewVideos != 200_000 || f.svc.MaxHeldEvents != 100_000 {
		t.Errorf("--memory-budget 0 changed a default: %+v, cache %d, memtable %d, view %d, held %d", f.svc.Engine, f.cacheMB, f.memTableMB, f.viewVideos, f.svc.MaxHeldEvents)
	}

	for _, args := range [][]string{{"--memory-budget", "512"}, {"--memory-budget", "64MiB"}} {
		_, err := parseReplay(append(args, "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-01T01:00:00Z", "--brokers", "x:1", "--input-topic", "t"))
		if err == nil || !strings.Contains(err.Error(), "memory-budget") {
			t.Errorf("%v: got %v, want an error naming --memory-budget", args, err)
		}
	}
}
