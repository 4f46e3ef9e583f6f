//! `CREATE TABLE AS ... WITH (bucketed_by, bucket_count)`: Hive bucketing as Athena writes it,
//! checked against buckets computed outside Glaux.

use std::collections::{BTreeSet, HashMap};

use datafusion::prelude::SessionContext;

use crate::harness::*;

/// Each item's bucket of 4 under Hive's bucketing: Java's `String.hashCode` of the item (Hive
/// hashes a string's UTF-8 bytes the same way; `"apple".hashCode()` is 93029210), masked to
/// positive, modulo 4; NULL hashes to 0. Computed with Python, not with Glaux.
const BUCKETS_OF_4: [(&str, u32); 8] =
    [("apple", 2), ("pear", 2), ("fig", 0), ("kiwi", 0), ("plum", 0), ("lime", 1), ("date", 2), ("NULL", 0)];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bucketed_create_table_as_writes_one_file_per_bucket_named_as_hive_names_them() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;
    client
        .query(
            "CREATE TABLE by_item WITH (partitioned_by = ARRAY['region'], bucketed_by = ARRAY['item'], \
             bucket_count = 4) AS SELECT id, item, qty, region FROM sales",
        )
        .await?;
    let expected: HashMap<&str, u32> = BUCKETS_OF_4.into_iter().collect();
    for region in REGIONS {
        let dir = cluster.warehouse().join(format!("default/by_item/region={region}"));
        let mut buckets = BTreeSet::new();
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            // Hive's `000005_0...`: the bucket, six digits, then `_0_`.
            let bucket: u32 = name.get(..6).and_then(|b| b.parse().ok()).ok_or(format!("{name} names no bucket"))?;
            assert_eq!(name.get(6..9), Some("_0_"), "{name}");
            assert!(buckets.insert(bucket), "two files of bucket {bucket} in {region}");
            let file = SessionContext::new();
            file.register_parquet("f", dir.join(&name).to_string_lossy().as_ref(), Default::default()).await?;
            let items = rows_of(&file.sql("SELECT DISTINCT item FROM f").await?.collect().await?);
            for item in items {
                assert_eq!(expected.get(item.as_str()), Some(&bucket), "{item} in {name}");
            }
        }
        assert_eq!(buckets, BTreeSet::from([0, 1, 2]), "{region}: no item falls in bucket 3");
    }
    let check = "SELECT region, item, count(*), sum(qty), max(id) FROM {} GROUP BY region, item";
    assert_same_as_datafusion_pair(
        &mut client,
        &reference,
        &check.replace("{}", "by_item"),
        &check.replace("{}", "sales"),
    )
    .await;
    let show = rows_of(&client.query("SHOW CREATE TABLE by_item").await?.batches).join("\n");
    assert!(show.contains("'bucket_count' '4'") && show.contains("'bucketed_by' 'item'"), "{show}");

    // Writes that would add files to its buckets are refused, as Athena refuses them.
    for sql in ["INSERT INTO by_item VALUES (1, 'fig', 2, 'eu')", "ALTER TABLE by_item EXECUTE optimize"] {
        let error = client.query(sql).await.err().ok_or(format!("{sql} ran"))?.to_string();
        assert!(error.contains("is bucketed"), "{sql}: {error}");
    }
    // The function the writes use answers alike.
    let buckets = client
        .query("SELECT hive_bucket(4, 'apple'), hive_bucket(4, CAST(NULL AS VARCHAR)), hive_bucket(4, 'lime')")
        .await?;
    assert_eq!(rows_of(&buckets.batches), ["2 | 0 | 1"]);
    Ok(())
}
