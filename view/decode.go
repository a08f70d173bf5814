package view

import (
	"encoding/json"
	"strconv"
)

// unmarshalScore decodes a score record into s (which it zeroes first),
// as json.Unmarshal would. Records as the service writes them (one flat
// object of the known fields, plain ASCII strings) take a fast path that
// does not allocate, but for the id; anything else (escapes, unknown
// fields, null, other whitespace rules aside) goes to json.Unmarshal, so
// the result is always the one json.Unmarshal gives.
func unmarshalScore(data []byte, s *Score) error {
	*s = Score{}
	if fastScore(data, s) {
		return nil
	}
	*s = Score{}
	return json.Unmarshal(data, s)
}

// fastScore decodes data into s and reports whether it could; when it
// could not, s holds garbage.
func fastScore(data []byte, s *Score) bool {
	d := scanner{b: data}
	d.space()
	if !d.byte('{') {
		return false
	}
	d.space()
	if d.byte('}') {
		return d.end()
	}
	for {
		d.space()
		key, ok := d.str()
		if !ok {
			return false
		}
		d.space()
		if !d.byte(':') {
			return false
		}
		d.space()
		switch string(key) {
		case "video_id":
			v, ok := d.str()
			if !ok {
				return false
			}
			s.VideoID = string(v)
		case "model":
			v, ok := d.str()
			if !ok {
				return false
			}
			switch string(v) { // no allocation for the known models
			case "trending":
				s.Model = "trending"
			case "hn":
				s.Model = "hn"
			case "reddit-hot":
				s.Model = "reddit-hot"
			default:
				s.Model = string(v)
			}
		case "ts":
			ok = d.int(&s.TS)
		case "seq":
			ok = d.int(&s.Seq)
		case "likes":
			ok = d.int(&s.Likes)
		case "unique_likers":
			ok = d.int(&s.UniqueLikers)
		case "unlikes":
			ok = d.int(&s.Unlikes)
		case "likes_1m":
			ok = d.int(&s.Likes1m)
		case "likes_5m":
			ok = d.int(&s.Likes5m)
		case "likes_1h":
			ok = d.int(&s.Likes1h)
		case "likes_24h":
			ok = d.int(&s.Likes24h)
		case "score":
			ok = d.float(&s.Score)
		case "rate_5m":
			ok = d.float(&s.Rate5m)
		case "rate_1h":
			ok = d.float(&s.Rate1h)
		case "rate_24h":
			ok = d.float(&s.Rate24h)
		case "velocity":
			ok = d.float(&s.Velocity)
		case "acceleration":
			ok = d.float(&s.Acceleration)
		case "damped_likes_5m":
			ok = d.int(&s.DampedLikes5m)
		case "damped_likes_1h":
			ok = d.int(&s.DampedLikes1h)
		case "damped_reason":
			v, ok := d.str()
			if !ok {
				return false
			}
			switch string(v) { // no allocation for the usual reasons
			case "":
				s.DampedReason = ""
			case "account_rate":
				s.DampedReason = "account_rate"
			case "lockstep":
				s.DampedReason = "lockstep"
			default:
				s.DampedReason = string(v)
			}
		default:
			return false
		}
		if !ok {
			return false
		}
		d.space()
		if d.byte('}') {
			return d.end()
		}
		if !d.byte(',') {
			return false
		}
	}
}

type scanner struct {
	b []byte
	i int
}

func (d *scanner) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *scanner) byte(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (d *scanner) end() bool {
	d.space()
	return d.i == len(d.b)
}

// str reads a string of printable ASCII without escapes.
func (d *scanner) str() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return d.b[start : d.i-1], true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// number reads a number as JSON spells it; frac says whether it has a
// fraction or an exponent.
func (d *scanner) number() (tok []byte, frac, ok bool) {
	start := d.i
	digits := func() int {
		n := 0
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	d.byte('-')
	switch {
	case d.byte('0'):
	case digits() == 0:
		return nil, false, false
	}
	if d.byte('.') {
		frac = true
		if digits() == 0 {
			return nil, false, false
		}
	}
	if d.byte('e') || d.byte('E') {
		frac = true
		if !d.byte('+') {
			d.byte('-')
		}
		if digits() == 0 {
			return nil, false, false
		}
	}
	return d.b[start:d.i], frac, true
}

func (d *scanner) int(p *int64) bool {
	tok, frac, ok := d.number()
	if !ok || frac {
		return false
	}
	n, err := strconv.ParseInt(string(tok), 10, 64)
	if err != nil {
		return false
	}
	*p = n
	return true
}

func (d *scanner) float(p *float64) bool {
	tok, _, ok := d.number()
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(string(tok), 64)
	if err != nil {
		return false
	}
	*p = f
	return true
}
