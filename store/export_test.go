package store

import "github.com/prometheus/client_golang/prometheus"

// ErrorsCounter is gatehouse_store_errors_total{op,error} (tests only).
func (d *DeadlineStore) ErrorsCounter(op, kind string) prometheus.Counter {
	return d.errors.WithLabelValues(op, kind)
}

// StorageFullGauge is gatehouse_store_storage_full (tests only).
func (d *DeadlineStore) StorageFullGauge() prometheus.Gauge { return d.fullG }
