-- The SQL job `weir verify` proves in the test command: numbers counted and
-- summed per residue class in 100 ms event-time windows (a number is its own
-- timestamp in ms), written exactly once to a local directory.
--
--   weir verify examples/exactly-once.sql --crashes 20
SET 'parallelism.default' = '2';
SET 'execution.checkpointing.interval' = '100 ms';

CREATE TABLE numbers (
  n BIGINT,
  class AS MOD(n, 13),
  ts AS TO_TIMESTAMP_LTZ(n, 3),
  WATERMARK FOR ts AS ts
) WITH (
  'connector' = 'datagen',
  'fields.n.kind' = 'sequence',
  'fields.n.start' = '1',
  'fields.n.end' = '30000',
  'rows-per-second' = '10000'
);

CREATE TABLE windows (
  class BIGINT,
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  numbers BIGINT,
  total BIGINT
) WITH ('connector' = 'filesystem', 'path' = './weir-data/exactly-once-sql/windows');

INSERT INTO windows
SELECT class, window_start, window_end, COUNT(*) AS numbers, SUM(n) AS total
FROM TABLE(TUMBLE(TABLE numbers, DESCRIPTOR(ts), INTERVAL '0.1' SECOND))
GROUP BY class, window_start, window_end;
