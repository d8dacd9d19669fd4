package auth

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/bidi"
	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/unicode/rangetable"
)

// saslPrep normalizes a password the way PostgreSQL's pg_saslprep does before SCRAM hashing (RFC 4013
// SASLprep), so verifiers and proofs computed here match those of PostgreSQL and libpq. As in PostgreSQL, a
// password that is not valid for SASLprep (invalid UTF-8, prohibited or unassigned code points, bad
// bidirectional text, empty after mapping) is used as-is, and an ASCII password is always used as-is.
//
// Like PostgreSQL, the prohibition and bidi checks look at the mapped string before NFKC normalization.
// Unassigned code points are judged by Unicode 4.1 (the oldest table in golang.org/x/text) rather than
// SASLprep's Unicode 3.2, so the few characters added in Unicode 4.0 and 4.1 are normalized here where
// PostgreSQL would use the password as-is.
func saslPrep(password string) string {
	ascii := true
	for i := 0; i < len(password); i++ {
		if password[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii || !utf8.ValidString(password) {
		return password
	}
	// Step 1, map: non-ASCII spaces (C.1.2) become U+0020, characters "commonly mapped to nothing" (B.1)
	// disappear.
	mapped := make([]rune, 0, len(password))
	for _, r := range password {
		switch {
		case unicode.Is(nonASCIISpace, r):
			mapped = append(mapped, ' ')
		case unicode.Is(mappedToNothing, r):
		default:
			mapped = append(mapped, r)
		}
	}
	if len(mapped) == 0 {
		return password
	}
	// Step 3, prohibit (checked on the mapped text, as PostgreSQL does).
	randAL := false
	for _, r := range mapped {
		if prohibitedOutput(r) || !unicode.Is(assigned, r) {
			return password
		}
		if isRandALCat(r) {
			randAL = true
		}
	}
	// Step 4, bidi: a string with right-to-left characters has no left-to-right ones and starts and ends
	// with a right-to-left character.
	if randAL {
		for _, r := range mapped {
			if bidiClass(r) == bidi.L {
				return password
			}
		}
		if !isRandALCat(mapped[0]) || !isRandALCat(mapped[len(mapped)-1]) {
			return password
		}
	}
	// Step 2, normalize with NFKC.
	return norm.NFKC.String(string(mapped))
}

// assigned holds the code points assigned in Unicode 4.1.
var assigned = rangetable.Assigned("4.1.0")

func bidiClass(r rune) bidi.Class {
	p, _ := bidi.LookupRune(r)
	return p.Class()
}

// isRandALCat reports whether r is in RFC 3454 table D.1 (bidirectional class R or AL).
func isRandALCat(r rune) bool {
	c := bidiClass(r)
	return c == bidi.R || c == bidi.AL
}

// nonASCIISpace is RFC 3454 table C.1.2.
var nonASCIISpace = &unicode.RangeTable{R16: []unicode.Range16{
	{0x00a0, 0x00a0, 1}, {0x1680, 0x1680, 1}, {0x2000, 0x200b, 1}, {0x202f, 0x202f, 1}, {0x205f, 0x205f, 1},
	{0x3000, 0x3000, 1},
}}

// mappedToNothing is RFC 3454 table B.1.
var mappedToNothing = &unicode.RangeTable{R16: []unicode.Range16{
	{0x00ad, 0x00ad, 1}, {0x034f, 0x034f, 1}, {0x1806, 0x1806, 1}, {0x180b, 0x180d, 1}, {0x200b, 0x200d, 1},
	{0x2060, 0x2060, 1}, {0xfe00, 0xfe0f, 1}, {0xfeff, 0xfeff, 1},
}}

// prohibited is RFC 3454 tables C.1.2, C.2.1, C.2.2, C.3, C.5, C.6, C.7, C.8 and C.9; the non-characters of
// table C.4 are tested arithmetically by prohibitedOutput.
var prohibited = &unicode.RangeTable{
	R16: []unicode.Range16{
		{0x0000, 0x001f, 1}, {0x007f, 0x00a0, 1}, {0x0340, 0x0341, 1}, {0x06dd, 0x06dd, 1},
		{0x070f, 0x070f, 1}, {0x1680, 0x1680, 1}, {0x180e, 0x180e, 1}, {0x2000, 0x200f, 1},
		{0x2028, 0x202f, 1}, {0x205f, 0x2063, 1}, {0x206a, 0x206f, 1}, {0x2ff0, 0x2ffb, 1},
		{0x3000, 0x3000, 1}, {0xd800, 0xf8ff, 1}, {0xfdd0, 0xfdef, 1}, {0xfeff, 0xfeff, 1},
		{0xfff9, 0xfffd, 1},
	},
	R32: []unicode.Range32{
		{0x1d173, 0x1d17a, 1}, {0xe0001, 0xe0001, 1}, {0xe0020, 0xe007f, 1}, {0xf0000, 0xffffd, 1},
		{0x100000, 0x10fffd, 1},
	},
}

func prohibitedOutput(r rune) bool {
	return r&0xfffe == 0xfffe || unicode.Is(prohibited, r)
}
