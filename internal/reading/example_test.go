package reading_test

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

func ExampleEncoder() {
	enc := reading.NewEncoder(os.Stdout)
	r := reading.Reading{
		Device: "pi-07", Stream: 0x9f3c2a71d04b88e1, Seq: 1042,
		Sensor: "greenhouse.temperature", Value: 21.5, Unit: "C",
		Time: time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC),
	}
	if err := enc.Reading(&r); err != nil {
		fmt.Println(err)
	}
	enc.Dropped(&reading.Dropped{Device: "pi-07", Stream: r.Stream, From: 1, To: 1000})
	// Output:
	// {"device":"pi-07","stream":"9f3c2a71d04b88e1","seq":1042,"sensor":"greenhouse.temperature","value":21.5,"unit":"C","timestamp":"2026-11-22T10:00:00.123Z"}
	// {"device":"pi-07","stream":"9f3c2a71d04b88e1","dropped":{"from":1,"to":1000}}
}

func ExampleDecoder() {
	body := `{"device":"pi-07","stream":"9f3c2a71d04b88e1","seq":1,"sensor":"t","value":21.5,"timestamp":"2026-11-22T10:00:00Z"}
{"device":"pi-07","stream":"9f3c2a71d04b88e1","seq":2,"sensor":"t","value":"warm","timestamp":"2026-11-22T10:00:01Z"}
`
	dec := reading.NewDecoder(strings.NewReader(body), reading.Limits{})
	for {
		var l reading.Line
		err := dec.Decode(&l)
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(l.Reading.Seq, l.Reading.Sensor, l.Reading.Value)
	}
	// Output:
	// 1 t 21.5
	// line 2: field "value": invalid: must be a number
}
