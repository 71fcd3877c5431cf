package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"ftvm/machine"
)

func main() {
	k, _ := os.ReadFile(os.Args[1])
	i, _ := os.ReadFile(os.Args[2])
	m, err := machine.New(machine.Config{Kernel: k, Initrd: i, Cmdline: "console=ttyS0 ftvm.mode=cpubench ftvm.n=40"})
	if err != nil {
		panic(err)
	}
	m.Run(150e6)
	f, _ := os.Create("/tmp/cpu.prof")
	pprof.StartCPUProfile(f)
	t := time.Now()
	m.Run(750e6)
	pprof.StopCPUProfile()
	n := m.Instret() - 150e6
	fmt.Println(n, time.Since(t), float64(n)/time.Since(t).Seconds()/1e6)
}
