// Package importrules holds no code: its test writes down which way tenantproxy's imports run, and fails
// when a change makes one run the wrong way (see importrules_test.go for the rules and their reasons).
package importrules
