-- The demo lake (src/demo.rs's generator) written to S3 by the cluster itself: a CREATE TABLE AS
-- whose rows come from generate_series, partitioned as Firehose writes events.
CREATE TABLE IF NOT EXISTS events
WITH (format = 'PARQUET', external_location = 's3://lake/demo/events/', partitioned_by = ARRAY['name', 'd'])
AS SELECT tstamp, payload, md5(payload) AS payload_md5, name, d
FROM (
  SELECT
    CASE WHEN k = 0 THEN 'anonymous_visited' WHEN k = 1 AND sid % 3 = 0 THEN 'account_created'
         ELSE 'measurement_recorded' END AS name,
    to_char(ts, '%Y-%m-%d') AS d,
    ts AS tstamp,
    '{"session_id": "s' || sid || '", "dvce_os": "' ||
      CASE sid % 4 WHEN 0 THEN 'iOS' WHEN 1 THEN 'Android' WHEN 2 THEN 'Windows' ELSE 'macOS' END ||
      '", "event_index": ' || k || ', "value": ' || CAST(((sid * 7919 + k * 104729) % 1000) / 10.0 AS VARCHAR) || '}' AS payload
  FROM (
    SELECT s.value AS sid, g.value AS k,
           CAST(to_timestamp(1685577600 + ((s.value - 1) * 2588400 / 100000) + g.value * 97) AS TIMESTAMP) AS ts
    FROM generate_series(1, 100000) AS s CROSS JOIN generate_series(0, 4) AS g
    WHERE g.value <= s.value % 5
  )
);
SELECT name, count(*) AS events FROM events GROUP BY name ORDER BY 2 DESC;
