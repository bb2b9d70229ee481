-- wrk reporting hook for experiments/benches/hello.py.
--
-- After the run, print ONE line: "JSON " followed by a JSON object with the
-- request count, the run's duration, the throughput, wrk's error counters and
-- latency percentiles. Durations and latencies are in microseconds.

local function int(x)
   return string.format("%d", math.floor(x + 0.5))
end

done = function(summary, latency, requests)
   local e = summary.errors
   local seconds = summary.duration / 1e6
   local rps = 0
   if seconds > 0 then rps = summary.requests / seconds end
   local parts = {
      '"requests": ' .. int(summary.requests),
      '"duration_us": ' .. int(summary.duration),
      '"requests_per_s": ' .. string.format("%.2f", rps),
      '"bytes": ' .. int(summary.bytes),
      '"errors": {"connect": ' .. int(e.connect) .. ', "read": ' .. int(e.read)
         .. ', "write": ' .. int(e.write) .. ', "status": ' .. int(e.status)
         .. ', "timeout": ' .. int(e.timeout) .. '}',
      '"latency_us": {"p50": ' .. int(latency:percentile(50))
         .. ', "p90": ' .. int(latency:percentile(90))
         .. ', "p99": ' .. int(latency:percentile(99))
         .. ', "p99.9": ' .. int(latency:percentile(99.9))
         .. ', "max": ' .. int(latency.max)
         .. ', "mean": ' .. int(latency.mean) .. '}',
   }
   io.write("JSON {" .. table.concat(parts, ", ") .. "}\n")
end
