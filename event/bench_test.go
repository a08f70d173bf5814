package event

import (
	"encoding/json"
	"testing"
)

const typicalEpochMS = `{"event_id":"e1","video_id":"v42","user_id":"u7","creator_id":"c3","action":"like","ts":1795672800123,"region":"US"}`

func benchmarkDecode(b *testing.B, record string) {
	data := []byte(record)
	var ev Event
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(data, 0, &ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkDecode(b *testing.B)        { benchmarkDecode(b, typical) }
func BenchmarkDecodeEpochMS(b *testing.B) { benchmarkDecode(b, typicalEpochMS) }

func BenchmarkAppendJSON(b *testing.B) {
	var ev Event
	if err := Decode([]byte(typical), 0, &ev); err != nil {
		b.Fatal(err)
	}
	buf := AppendJSON(nil, &ev)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &ev)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecodeBinary reads the typical record in the internal topics'
// encoding (AppendBinary), for comparison with BenchmarkDecode.
func BenchmarkDecodeBinary(b *testing.B) {
	var ev Event
	if err := Decode([]byte(typical), 0, &ev); err != nil {
		b.Fatal(err)
	}
	data := AppendBinary(nil, &ev)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeBinary(data, &ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkStdlibDecode is encoding/json decoding the typical record into a
// struct, for comparison. It checks nothing beyond syntax and types.
func BenchmarkStdlibDecode(b *testing.B) {
	data := []byte(typical)
	var ev struct {
		EventID   string `json:"event_id"`
		VideoID   string `json:"video_id"`
		UserID    string `json:"user_id"`
		CreatorID string `json:"creator_id"`
		Action    string `json:"action"`
		TS        string `json:"ts"`
		Region    string `json:"region"`
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := json.Unmarshal(data, &ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
