package sharedindex

import (
	"net/url"
	"strings"
)

// redactString replaces the password of rawURL wherever s quotes it.
func redactString(s, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return s
	}
	if p, ok := u.User.Password(); ok && p != "" {
		s = strings.ReplaceAll(s, p, "xxxxx")
	}
	return s
}
