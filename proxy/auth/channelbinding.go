package auth

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"hash"
)

// ChannelBindingData returns the tls-server-end-point channel-binding data of the server certificate
// cert (RFC 5929, section 4.1): the hash of the DER certificate with the hash function of its signature
// algorithm, SHA-256 for certificates signed with MD5 or SHA-1. It returns nil for a nil certificate or
// a signature algorithm without a separate hash function (Ed25519); then SCRAM-SHA-256-PLUS cannot be
// offered, as in PostgreSQL.
func ChannelBindingData(cert *x509.Certificate) []byte {
	if cert == nil {
		return nil
	}
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.DSAWithSHA256, x509.ECDSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil
	}
	h.Write(cert.Raw)
	return h.Sum(nil)
}
