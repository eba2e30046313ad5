// Package soak holds TestSoak: both proxies of a mesh under paced, mixed,
// partly hostile load for a set time, with their file descriptors,
// goroutines, resident memory and open connections compared before and
// after. See README.md.
package soak
