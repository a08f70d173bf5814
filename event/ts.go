package event

import "time"

// maxTS is 10000-01-01T00:00:00Z in epoch milliseconds, the first instant
// after the last year RFC 3339 can write.
const maxTS = 253402300800000

const msPerDay = 24 * 60 * 60 * 1000

// parseTimestamp parses the string form of ts: a string of digits is epoch
// milliseconds, anything else must be RFC 3339. Values above maxTS come back
// as maxTS; the caller checks the range.
func parseTimestamp(b []byte) (int64, bool) {
	if ms, ok := parseDigits(b); ok {
		return ms, true
	}
	if ms, ok := parseRFC3339UTC(b); ok {
		return ms, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return 0, false
	}
	return t.UnixMilli(), true
}

// parseDigits parses a non-empty string of decimal digits, saturating at
// maxTS so that no length of input overflows.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		d := c - '0'
		if d > 9 {
			return 0, false
		}
		if n < maxTS {
			n = n*10 + int64(d)
		}
	}
	return min(n, maxTS), true
}

// parseRFC3339UTC parses "2006-01-02T15:04:05Z" with an optional fraction of
// any number of digits, the forms producers send, without the cost of
// time.Parse. It accepts exactly what time.Parse accepts of those forms; it
// returns false for everything else, which is left to time.Parse.
func parseRFC3339UTC(b []byte) (int64, bool) {
	const layout = "2006-01-02T15:04:05Z"
	if len(b) < len(layout) || b[len(b)-1] != 'Z' ||
		b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	cent, yy := twoDigits(b[0:]), twoDigits(b[2:])
	month, day := twoDigits(b[5:]), twoDigits(b[8:])
	hour, minute, sec := twoDigits(b[11:]), twoDigits(b[14:]), twoDigits(b[17:])
	if cent < 0 || yy < 0 || month < 1 || month > 12 || day < 1 ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return 0, false
	}
	year := cent*100 + yy
	if day > daysIn(year, month) {
		return 0, false
	}
	var ms int64
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		// A fraction is a point and at least one digit; sub-millisecond
		// digits are truncated.
		if frac[0] != '.' || len(frac) < 2 {
			return 0, false
		}
		for i, c := range frac[1:] {
			d := c - '0'
			if d > 9 {
				return 0, false
			}
			switch i {
			case 0:
				ms += 100 * int64(d)
			case 1:
				ms += 10 * int64(d)
			case 2:
				ms += int64(d)
			}
		}
	}
	days := daysFromCivil(year, month, day)
	return days*msPerDay + int64(hour*3600+minute*60+sec)*1000 + ms, true
}

// twoDigits returns the value of b[0:2], or -1 if they are not digits.
func twoDigits(b []byte) int {
	d0, d1 := b[0]-'0', b[1]-'0'
	if d0 > 9 || d1 > 9 {
		return -1
	}
	return int(d0)*10 + int(d1)
}

func isLeap(year int) bool {
	return year%4 == 0 && (year%100 != 0 || year%400 == 0)
}

func daysIn(year, month int) int {
	if month == 2 {
		if isLeap(year) {
			return 29
		}
		return 28
	}
	// 31 in odd months up to July and in even months from August.
	return 30 + (month+month>>3)&1
}

// daysFromCivil returns the days from 1970-01-01 to a date of the proleptic
// Gregorian calendar, by Howard Hinnant's algorithm: years start in March so
// that the leap day comes last, and 400 years make a whole cycle.
func daysFromCivil(year, month, day int) int64 {
	if month <= 2 {
		year--
	}
	era := year
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := year - era*400                          // [0, 399]
	doy := (153*((month+9)%12)+2)/5 + day - 1      // [0, 365], from March 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy         // [0, 146096]
	return int64(era)*146097 + int64(doe) - 719468 // 719468 days from 0000-03-01 to 1970-01-01
}

// civilFromDays is the inverse of daysFromCivil, for days >= -719468.
func civilFromDays(days int64) (year, month, day int) {
	z := days + 719468
	era := z / 146097
	doe := int(z - era*146097)
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day = doy - (153*mp+2)/5 + 1
	month = mp + 3
	if month > 12 {
		month -= 12
	}
	year = yoe + int(era)*400
	if month <= 2 {
		year++
	}
	return year, month, day
}

// appendTimestamp appends ms as RFC 3339 UTC with exactly three fractional
// digits.
func appendTimestamp(dst []byte, ms int64) []byte {
	if ms < 0 || ms >= maxTS {
		// Not a valid event time; let package time write what it can.
		return time.UnixMilli(ms).UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	}
	year, month, day := civilFromDays(ms / msPerDay)
	rem := int(ms % msPerDay)
	hour, minute, sec, milli := rem/3600000, rem/60000%60, rem/1000%60, rem%1000
	return append(dst,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+month/10), byte('0'+month%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+milli/100), byte('0'+milli/10%10), byte('0'+milli%10), 'Z')
}
