// Package spool is Outpost's outbox on the device: a bbolt file that keeps
// every committed reading on local flash until the uplink has delivered it.
//
// The spool assigns each reading its stream and seq, group-commits appends
// in one fsynced transaction per commit interval (sparing the SD card),
// hands the drain side batches oldest first, deletes a batch when it is
// acknowledged (sharing the next commit), enforces the byte and age caps by
// dropping the oldest readings with seq-range accounting (or rejecting new
// ones), keeps readings the receiver rejected in a dead-letter bucket, and
// quarantines a file it cannot read, starting a new stream.
//
// # File format
//
// bbolt, page size 4096, freelist not synced; package record holds the
// buckets, keys and records of format version 1, package boltfile what
// reads the file beneath bbolt's API.
//
// # Files beside the spool
//
//	<path>.quarantined-<UTC time>  a file that could not be read, set
//	                               aside; Salvage copies what it can back
//	<path>.journal                 the pre-commit journal (package journal):
//	                               readings and acks not committed yet
//	<path>.journal.quarantined-<t> the journal of a file quarantined at <t>
//	<path>.compact                 a compaction in progress; removed at open
//	<path>.opening                 an open in progress: bbolt rebuilds its
//	                               freelist in a goroutine a corrupt page
//	                               can crash, so an open that finds this
//	                               marker checks every page itself first,
//	                               and quarantines after two deaths
//
// # Durability and writes
//
// A reading is committed when the transaction holding it has been fsynced
// (bbolt fdatasyncs twice per commit). Acknowledgements are deleted in the
// next commit, beside the appends (within 200 ms once 100 readings' acks
// wait, at once from 2,500). Until its commit each reading and each ack is
// in the pre-commit journal, written to the page cache through a shared
// mmap as Append and Ack run and never fsynced: a crash of the process
// loses neither (Open replays the journal into a commit), a power cut may
// take the last commit interval's readings and acks (a resend, which the
// receiver discards). With 10 readings per commit a reading costs about
// two pages (8 KiB) per commit, ~0.8 KiB over its life.
package spool
