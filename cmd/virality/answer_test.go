package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/view"
)

// TestInstancesAnswerEveryVideo: two `virality run` instances share a
// 4-partition topic; once the likes are consumed, each answers
// /v1/videos/{id} for every video, its own partitions' from its state and
// the others' from its view of the scores topic, with the video's last
// record there, and each answers /v1/trending for the global list; a view
// opened in the test's process holds every video's last record. Each also
// answers /v1/creators/{id} for every creator and the rising list.
func TestInstancesAnswerEveryVideo(t *testing.T) {
	if testing.Short() {
		t.Skip("two child processes: not in -short")
	}
	kc := testKafka(t)
	brokers := strings.Join(kc.Brokers, ",")
	dir := t.TempDir()
	suffix := fmt.Sprintf("-answer-%d", time.Now().UnixNano())
	topic, scores, trending, group := "likes"+suffix, "video-scores"+suffix, "trending"+suffix, "virality"+suffix
	creators, rising := "creator-scores"+suffix, "rising-creators"+suffix
	const n = 4
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "60000", "--videos", "3000", "--users", "30000", "--duration", "4h",
		"--bursts", "2", "--campaigns", "2", "--farm-accounts", "300", "--out", in)
	if _, err := kafkaio.EnsureTopics(context.Background(), kc, []kafkaio.TopicSpec{{Name: topic, Partitions: n}}); err != nil {
		t.Fatal(err)
	}
	runCommand(t, "produce", "--brokers", brokers, "--topic", topic, "--in", in)
	total := int64(len(fileLines(t, in)))

	addrs := []string{freePort(t), freePort(t)}
	var instances []*instance
	for i, addr := range addrs {
		name := fmt.Sprint("abc"[i : i+1])
		instances = append(instances, startInstance(t, name, "run", "--brokers", brokers, "--group", group,
			"--input-topic", topic, "--scores-topic", scores, "--trending-topic", trending,
			"--dead-letter-topic", "likes.dlq"+suffix, "--state-dir", filepath.Join(dir, "state-"+name),
			"--creator-scores-topic", creators, "--rising-creators-topic", rising,
			"--http-addr", addr, "--log-level", "info", "--idle-timeout", "1s", "--commit-interval", "200ms"))
	}
	if !eventually(2*time.Minute, func() bool { return committed(t, kc, group, topic, n) >= total }) {
		t.Fatalf("timed out: %d of %d likes committed", committed(t, kc, group, topic, n), total)
	}

	get := func(url string) (int, string) {
		res, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(b))
	}
	// Every video's last record on the topic, as each instance answers it.
	var miss, missID string
	answered := func() bool {
		want := lastScores(t, kc, scores)
		if len(want) == 0 {
			miss = "no score records yet"
			return false
		}
		for id, rec := range want {
			for i, addr := range addrs {
				code, body := get("http://" + addr + "/v1/videos/" + id)
				if code != http.StatusOK || withoutSeq(body) != withoutSeq(rec) {
					miss = fmt.Sprintf("instance %d, video %s: %d %.300s\n topic: %.300s", i, id, code, body, rec)
					missID = id
					return false
				}
			}
		}
		miss = fmt.Sprintf("%d videos", len(want))
		return true
	}
	// Under the load of the whole test suite an instance can take a while
	// to flush what it held back once idle.
	if !eventually(3*time.Minute, answered) {
		// What the topic holds of the video, and what the instances did.
		var where []string
		for _, r := range readAll(t, kc, scores) {
			if string(r.Key) == missID {
				where = append(where, fmt.Sprintf("p%d@%d %.120s", r.Partition, r.Offset, r.Value))
			}
		}
		for _, in := range instances {
			_ = in.cmd.Process.Signal(syscall.SIGTERM)
			_ = in.cmd.Wait()
			t.Logf("instance %s:\n%s", in.name, in.stderr.String())
		}
		t.Fatalf("not every video answered by both instances: %s\n records of the video:\n %s", miss, strings.Join(where, "\n "))
	}
	// A view in this process, another than the service's, reaches every
	// video's last record.
	vcfg := view.DefaultConfig()
	vcfg.Kafka, vcfg.ScoresTopic, vcfg.TrendingTopic = kc, scores, trending
	v, err := view.Open(context.Background(), vcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := v.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// An instance that takes a partition over writes again what the one
	// before wrote after their last commit, and its held-back records only
	// once idle: wait for the topic's last records and the view to agree.
	var viewMiss string
	viewHolds := func() bool {
		for id, rec := range lastScores(t, kc, scores) {
			if s, ok := v.Get(id); !ok || string(s.Raw) != rec {
				var where []string
				for _, r := range readAll(t, kc, scores) {
					if string(r.Key) == id {
						where = append(where, fmt.Sprintf("p%d@%d", r.Partition, r.Offset))
					}
				}
				viewMiss = fmt.Sprintf("video %s: %v %s\n topic: %s\n records at %v", id, ok, s.Raw, rec, where)
				return false
			}
		}
		return true
	}
	if !eventually(time.Minute, viewHolds) {
		t.Fatalf("view: %s", viewMiss)
	}
	// Every creator, from either instance: partition 0's holder from its
	// state, the other from its view of creator-scores.
	var creatorMiss string
	creatorsAnswered := func() bool {
		want := lastScores(t, kc, creators)
		if len(want) == 0 {
			creatorMiss = "no creator records yet"
			return false
		}
		for id, rec := range want {
			for i, addr := range addrs {
				code, body := get("http://" + addr + "/v1/creators/" + id)
				// Partition 0's holder answers the creator's current state,
				// which may be ahead of its last record (the emission
				// threshold); the other, the last record.
				if code != http.StatusOK || !strings.Contains(body, `"creator_id":"`+id+`"`) ||
					(!sameRecord(body, rec) && !newerRecord(body, rec)) {
					creatorMiss = fmt.Sprintf("instance %d, creator %s: %d %.300s\n topic: %.300s", i, id, code, body, rec)
					return false
				}
			}
		}
		creatorMiss = fmt.Sprintf("%d creators", len(want))
		return true
	}
	if !eventually(time.Minute, creatorsAnswered) {
		t.Fatalf("not every creator answered by both instances: %s", creatorMiss)
	}
	for i, addr := range addrs {
		if !eventually(time.Minute, func() bool {
			code, body := get("http://" + addr + "/v1/creators/rising?region=global&k=5")
			return code == http.StatusOK && strings.Contains(body, `"creator_id"`)
		}) {
			code, body := get("http://" + addr + "/v1/creators/rising?region=global&k=5")
			t.Fatalf("instance %d: /v1/creators/rising: %d %s", i, code, body)
		}
	}
	for i, addr := range addrs {
		if !eventually(time.Minute, func() bool {
			code, body := get("http://" + addr + "/v1/trending?region=global&k=5")
			return code == http.StatusOK && strings.Contains(body, `"video_id"`)
		}) {
			code, body := get("http://" + addr + "/v1/trending?region=global&k=5")
			t.Fatalf("instance %d: /v1/trending: %d %s", i, code, body)
		}
	}
	for _, in := range instances {
		in.stop(t, syscall.SIGTERM)
	}
	t.Logf("both instances answer for every video (%s), every creator (%s) and the global lists", miss, creatorMiss)
}

// newerRecord reports whether record a has a later ts than b.
func newerRecord(a, b string) bool {
	var x, y struct{ TS int64 }
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && x.TS > y.TS
}

// sameRecord reports whether two JSON records hold the same fields and
// values, seq aside (numbers compared as JSON numbers decode).
func sameRecord(a, b string) bool {
	var x, y map[string]any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	delete(x, "seq")
	delete(y, "seq")
	return reflect.DeepEqual(x, y)
}
