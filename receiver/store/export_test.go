package store

// Increasing exposes increasing to the external tests.
var Increasing = increasing
