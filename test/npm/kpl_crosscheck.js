#!/usr/bin/env node
// Cross-check of the agent's KPL aggregation (aggregate/crosscheck_test.go)
// against an independent implementation, awslabs' aws-kinesis-agg.
//
// Reads one JSON request on stdin, writes one JSON response on stdout.
// Binary data travels as base64.
//
//   {"op": "deaggregate", "records": [{"data", "partitionKey", "explicitHashKey"}]}
//     -> {"results": [{"error": "..."} | {"records": [{"partitionKey",
//        "explicitHashKey", "hasExplicitHashKeyIndex", "data"}]}]}
//     Each Kinesis record goes through deaggregateSync with checksums
//     verified. hasExplicitHashKeyIndex tells whether the sub-record carried
//     the optional index (deaggregateSync alone cannot: protobufjs reads an
//     absent index as 0).
//
//   {"op": "aggregate", "batches": [[{"data", "partitionKey", "explicitHashKey"}]]}
//     -> {"results": [{"error": "..."} | {"records": [{"data", "partitionKey",
//        "explicitHashKey"}]}]}
//     Each batch goes through a RecordAggregator, which starts a new Kinesis
//     record when the next user record would not fit 1 MiB.
'use strict';

const agg = require('aws-kinesis-agg');
const common = require('aws-kinesis-agg/lib/common');

function deaggregate(records) {
	return records.map((rec) => {
		const kinesisRecord = {data: rec.data, partitionKey: rec.partitionKey, sequenceNumber: '1'};
		if (rec.explicitHashKey) {
			kinesisRecord.explicitPartitionKey = rec.explicitHashKey;
		}
		let result;
		agg.deaggregateSync(kinesisRecord, true, (err, userRecords) => {
			if (err) {
				result = {error: String(err && err.message || err)};
				return;
			}
			result = {records: userRecords.map((u) => ({
				partitionKey: u.partitionKey,
				explicitHashKey: u.explicitPartitionKey === undefined ? null : String(u.explicitPartitionKey),
				data: u.data,
			}))};
		});
		if (result.error) {
			return result;
		}
		// Presence of the optional explicit hash key index, per sub-record.
		const buf = Buffer.from(rec.data, 'base64');
		if (buf.length >= 20 && buf.subarray(0, 4).toString('hex') === common.magicNumber) {
			const msg = common.AggregatedRecord.decode(buf.subarray(4, buf.length - 16));
			msg.records.forEach((r, i) => {
				result.records[i].hasExplicitHashKeyIndex = Object.prototype.hasOwnProperty.call(r, 'explicit_hash_key_index');
			});
		}
		return result;
	});
}

function aggregate(batches) {
	return batches.map((batch) => {
		const out = [];
		try {
			const aggregator = new agg.RecordAggregator();
			for (const rec of batch) {
				const userRecord = {data: Buffer.from(rec.data, 'base64'), partitionKey: rec.partitionKey};
				if (rec.explicitHashKey) {
					userRecord.explicitHashKey = rec.explicitHashKey;
				}
				if (aggregator.length() > 0 && !aggregator.checkIfUserRecordFits(userRecord)) {
					out.push(aggregator.build());
				}
				aggregator.addUserRecord(userRecord);
			}
			if (aggregator.length() > 0) {
				out.push(aggregator.build());
			}
		} catch (e) {
			return {error: String(e && e.message || e)};
		}
		return {records: out.map((r) => ({
			data: r.data.toString('base64'),
			partitionKey: r.partitionKey,
			explicitHashKey: r.ExplicitHashKey || null,
		}))};
	});
}

const req = JSON.parse(require('fs').readFileSync(0, 'utf8'));
let results;
switch (req.op) {
case 'deaggregate':
	results = deaggregate(req.records);
	break;
case 'aggregate':
	results = aggregate(req.batches);
	break;
default:
	process.stderr.write(`unknown op ${req.op}\n`);
	process.exit(2);
}
process.stdout.write(JSON.stringify({results}));
