package scan_test

import (
	"log"
	"os"

	"github.com/outpost-iot/outpost/drivers/scan"
)

func Example() {
	// What `outpost sensors scan` does: the live /dev and /sys.
	if err := scan.Run(os.Stdout, scan.Options{}); err != nil {
		log.Fatal(err)
	}
}
