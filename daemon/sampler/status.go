package sampler

import (
	"strings"
	"time"
)

// State is a sensor's state.
type State string

// States of a sensor.
const (
	// StateStarting: not opened or read yet.
	StateStarting State = "starting"
	// StateOK: the last read returned every measurement.
	StateOK State = "ok"
	// StateDegraded: the last read returned some measurements and an error
	// (e.g. one probe of several fails its CRC).
	StateDegraded State = "degraded"
	// StateFailing: the sensor could not be opened or read; it is retried
	// with backoff.
	StateFailing State = "failing"
	// StateStopped: the sampler has stopped.
	StateStopped State = "stopped"
)

// SensorStatus is one sensor's status, for `outpost status` and the
// heartbeat.
type SensorStatus struct {
	Name   string `json:"name"`
	Driver string `json:"driver"`
	State  State  `json:"state"`
	// Device describes the open device, e.g. "BME280 on I2C1 at 0x76".
	Device string `json:"device,omitempty"`
	// Last holds the values of the last read that returned any, taken at
	// LastTime.
	Last     []LastValue `json:"last,omitempty"`
	LastTime time.Time   `json:"last_time,omitzero"`
	// Readings counts the readings handed to the sink.
	Readings uint64 `json:"readings"`
	// Errors counts failed opens and reads (partial ones included), and
	// LastError is the latest, at LastErrorTime.
	Errors        uint64    `json:"errors"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
	// SinkErrors counts readings the sink refused.
	SinkErrors uint64 `json:"sink_errors,omitempty"`
	// RetryAt is when a failing sensor is tried next.
	RetryAt time.Time `json:"retry_at,omitzero"`
}

// LastValue is one value of a sensor's last read, as status shows it.
type LastValue struct {
	Name   string            `json:"name"` // the measurement, e.g. "temperature", "s0"
	Unit   string            `json:"unit,omitempty"`
	Value  float64           `json:"value"`
	Labels map[string]string `json:"labels,omitempty"`
}

func (r *runner) statusCopy() SensorStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	if len(r.last) > 0 {
		s.Last = make([]LastValue, len(r.last))
		for i, x := range r.last {
			name := strings.TrimPrefix(x.Sensor, r.spec.Name+".")
			s.Last[i] = LastValue{Name: name, Unit: x.Unit, Value: x.Value, Labels: x.Labels}
		}
	}
	return s
}
