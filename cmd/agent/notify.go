package main

import "github.com/kplagent/agent/internal/sdnotify"

func notifyReady()    { _ = sdnotify.Ready() }
func notifyStopping() { _ = sdnotify.Stopping() }
