package jsonl_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/viralityhq/virality/jsonl"
	"github.com/viralityhq/virality/processor"
)

func ExampleOpenSource() {
	dir, _ := os.MkdirTemp("", "jsonl-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "likes.jsonl")
	os.WriteFile(path, []byte("{\"video_id\":\"v1\",\"user_id\":\"u1\"}\r\n\n{\"video_id\":\"v2\",\"user_id\":\"u1\"}"), 0o644)

	src, err := jsonl.OpenSource([]string{path})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()
	var recs []processor.Record
	for {
		recs, err = src.Next(context.Background(), recs)
		for _, r := range recs {
			fmt.Println(r.Offset, string(r.Value))
		}
		if err == io.EOF {
			break
		}
	}
	// Output:
	// 0 {"video_id":"v1","user_id":"u1"}
	// 1 {"video_id":"v2","user_id":"u1"}
}

func ExampleCreateSink() {
	s, err := jsonl.CreateSink("-", jsonl.DeadLetters, jsonl.SinkOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	s.Restore(0) // the engine does this when it starts
	s.Write(&processor.Message{
		Value: []byte(`{"video_id":`),
		Headers: []processor.Header{
			{Key: processor.HeaderReason, Value: []byte("bad_json")},
			{Key: processor.HeaderError, Value: []byte("unexpected end of input")},
			{Key: processor.HeaderTopic, Value: []byte("likes.jsonl")},
			{Key: processor.HeaderPartition, Value: []byte("0")},
			{Key: processor.HeaderOffset, Value: []byte("41")},
		},
	})
	s.Close()
	// Output:
	// {"reason":"bad_json","error":"unexpected end of input","topic":"likes.jsonl","partition":0,"offset":41,"value":"{\"video_id\":"}
}
