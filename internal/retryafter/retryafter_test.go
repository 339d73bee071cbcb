package retryafter

import (
	"net/http"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	maxDelay := time.Duration(int64(1<<63-1)/int64(time.Second)) * time.Second
	tests := []struct {
		name  string
		value string
		want  time.Duration
	}{
		{name: "seconds", value: "120", want: 2 * time.Minute},
		{name: "three seconds", value: "3", want: 3 * time.Second},
		{name: "seconds with spaces", value: " 7 ", want: 7 * time.Second},
		{name: "zero", value: "0", want: 0},
		{name: "negative", value: "-5", want: 0},
		{name: "empty", value: "", want: 0},
		{name: "garbage", value: "soon", want: 0},
		{name: "fraction is not delay-seconds", value: "1.5", want: 0},
		{name: "huge clamps instead of overflowing", value: "99999999999999999", want: maxDelay},
		{name: "just over the clamp", value: "99999999999", want: maxDelay},
		{name: "beyond int64 is no number", value: "999999999999999999999999", want: 0},
		{name: "IMF-fixdate", value: "Thu, 26 Nov 2026 12:01:30 GMT", want: 90 * time.Second},
		{name: "IMF-fixdate by format", value: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		{name: "RFC 850 date", value: "Thursday, 26-Nov-26 12:00:10 GMT", want: 10 * time.Second},
		{name: "asctime date", value: "Thu Nov 26 12:00:05 2026", want: 5 * time.Second},
		{name: "date in the past", value: "Thu, 26 Nov 2026 11:59:00 GMT", want: 0},
		{name: "date now", value: "Thu, 26 Nov 2026 12:00:00 GMT", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parse(tt.value, now); got != tt.want {
				t.Errorf("Parse(%q) = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}
