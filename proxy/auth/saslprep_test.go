package auth

import "testing"

func TestSASLPrep(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"ascii unchanged", "Pass word\t1", "Pass word\t1"},
		{"ascii control unchanged", "a\x07b", "a\x07b"},
		{"composed latin unchanged", "p\u00e4ssw\u00f6rd", "p\u00e4ssw\u00f6rd"},
		{"decomposed latin composed", "pa\u0308ss", "p\u00e4ss"},
		{"roman numeral NFKC", "\u2168", "IX"},
		{"fullwidth NFKC", "\uff21\uff22", "AB"},
		{"ligature NFKC", "\ufb01x", "fix"},
		{"soft hyphen mapped to nothing", "I\u00adX", "IX"},
		{"zero width joiner mapped to nothing", "a\u200d\u00e9", "a\u00e9"},
		{"no-break space to space", "a\u00a0\u00e9", "a \u00e9"},
		{"ideographic space to space", "\u3000\u00e9", " \u00e9"},
		{"only mapped-to-nothing stays as is", "\u00ad", "\u00ad"},
		{"invalid utf8 as is", "\xff\xfe\u2168", "\xff\xfe\u2168"},
		{"prohibited control with non-ascii as is", "\u2168\u0007", "\u2168\u0007"},
		{"private use as is", "\ue000\u2168", "\ue000\u2168"},
		{"non-character as is", "\u2168\ufffe", "\u2168\ufffe"},
		{"plane 1 non-character as is", "\u2168\U0001fffe", "\u2168\U0001fffe"},
		{"unassigned in unicode 4.1 as is", "\u2168\U0001f600", "\u2168\U0001f600"},
		{"assigned in unicode 4.0, unassigned in 3.2, as is", "\u2168\u0221", "\u2168\u0221"},
		{"assigned in unicode 4.1, unassigned in 3.2, as is", "\u2168\u0237", "\u2168\u0237"},
		{"rtl only normalized", "\u05d0\u05d1", "\u05d0\u05d1"},
		{"rtl with ltr as is", "\u05d0a\u05d1\u2168", "\u05d0a\u05d1\u2168"},
		{"rtl not at the end as is", "\u05d01", "\u05d01"},
		{"arabic presentation form NFKC", "\ufe8d", "\u0627"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := saslPrep(tt.in); got != tt.want {
				t.Errorf("saslPrep(%+q) = %+q, want %+q", tt.in, got, tt.want)
			}
		})
	}
}
