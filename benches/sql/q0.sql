-- Nexmark-style bench query q0: the Flink SQL of the Flink peer's benchmark
-- (flink_bench.py: its deterministic `bid_gen` over a sequence, the `bid` view and
-- the query, unchanged; only the WITH clauses are weir's), 10,000,000 bids.
-- Run: weir sql benches/sql/q0.sql   (or weir bench job benches/sql/q0.sql)
SET 'parallelism.default' = '2';
SET 'execution.checkpointing.interval' = '1 s';

CREATE TABLE bid_gen (
  f0 BIGINT NOT NULL,
  auction AS MOD(ABS((f0 * (-7046029254386353131)) / 4294967296), 10000) + 1,
  bidder AS MOD(ABS((f0 * (-4417276706812531889)) / 4294967296), 100000) + 1,
  price AS MOD(ABS((f0 * (1609587929392839161)) / 65536), 100000000) + 1,
  channel AS CASE MOD(ABS((f0 * (-2960836687051489901)) / 4294967296), 4) WHEN 0 THEN 'apple' WHEN 1 THEN 'google' WHEN 2 THEN 'facebook' ELSE 'baidu' END,
  url AS SUBSTRING('https://www.nexmark.com/item.htm?query=1&auction=abcdefghijklmnopqrstuvwxyz01234' FROM 1 FOR CAST(24 + MOD(ABS((f0 * (-49064778989728563)) / 4294967296), 57) AS INT)),
  extra AS SUBSTRING('QWERTYUIOPASDFGHJKLZXCVBNMqwertyuiopasdf' FROM 1 FOR CAST(MOD(ABS((f0 * (-4265267296055464877)) / 4294967296), 41) AS INT)),
  date_time AS CAST(TO_TIMESTAMP_LTZ(1700000000000 + MOD(f0 - 1, 5000000) * 2 / 10, 3) AS TIMESTAMP(3)),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '10000000',
  'fields.f0.kind' = 'sequence',
  'fields.f0.start' = '1',
  'fields.f0.end' = '10000000'
);

CREATE TEMPORARY VIEW bid AS
SELECT auction, bidder, price, channel, url, date_time, extra FROM bid_gen;

CREATE TABLE out (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time TIMESTAMP(3), extra STRING) WITH ('connector' = 'blackhole');

INSERT INTO out
SELECT auction, bidder, price, channel, url, date_time, extra FROM bid;
