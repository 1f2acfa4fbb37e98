package postgres

// Classify is classify (tests only).
var Classify = classify
