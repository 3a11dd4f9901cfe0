--
-- ALTER EXTENSION role_guard UPDATE from every available version.  For each
-- version with an install script, install it, update to the default
-- version, and compare the extension's objects (and every view's columns)
-- with a fresh install of the default version.  With one version this
-- proves the mechanism; each new version adds a row below.
--
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS role_guard;

CREATE TEMP TABLE rg_shape (version text, object text);
CREATE FUNCTION pg_temp.rg_record(v text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO rg_shape
    SELECT v, pg_describe_object(classid, objid, objsubid)
    FROM pg_depend
    WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
      AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'role_guard')
    UNION ALL
    SELECT v, 'column ' || attrelid::regclass || '.' || attname || ' ' ||
              format_type(atttypid, atttypmod)
    FROM pg_attribute
    WHERE attrelid IN (SELECT objid FROM pg_depend
                       WHERE refclassid = 'pg_extension'::regclass
                         AND classid = 'pg_class'::regclass AND deptype = 'e'
                         AND refobjid = (SELECT oid FROM pg_extension
                                         WHERE extname = 'role_guard'))
      AND attnum > 0 AND NOT attisdropped
$$;

-- the reference: a fresh install of the default version
CREATE EXTENSION role_guard;
SELECT pg_temp.rg_record('fresh');
DROP EXTENSION role_guard;

DO $$
DECLARE
    v text;
BEGIN
    FOR v IN SELECT version FROM pg_available_extension_versions
             WHERE name = 'role_guard' ORDER BY version
    LOOP
        EXECUTE format('CREATE EXTENSION role_guard VERSION %L', v);
        EXECUTE 'ALTER EXTENSION role_guard UPDATE';
        PERFORM pg_temp.rg_record(v);
        EXECUTE 'DROP EXTENSION role_guard';
    END LOOP;
END
$$;

-- one row per starting version: updated to the default, same objects
SELECT a.version AS from_version,
       (SELECT default_version FROM pg_available_extensions
        WHERE name = 'role_guard') AS to_version,
       -- (views' row types and their array types are extension members in
       -- 17 and 18, not in 15: not counted here, so that the count is the
       -- same on every version; same_as_fresh still compares them)
       count(*) FILTER (WHERE object NOT LIKE 'type %') AS objects,
       count(*) = (SELECT count(*) FROM rg_shape WHERE version = 'fresh')
         AND NOT EXISTS (SELECT object FROM rg_shape WHERE version = 'fresh'
                         EXCEPT
                         SELECT object FROM rg_shape s WHERE s.version = a.version)
         AS same_as_fresh
FROM rg_shape a
WHERE a.version <> 'fresh'
GROUP BY a.version
ORDER BY a.version;

-- every other version has an update path to the default
SELECT count(*) AS versions_without_path
FROM pg_available_extension_versions v
WHERE v.name = 'role_guard'
  AND v.version <> (SELECT default_version FROM pg_available_extensions
                    WHERE name = 'role_guard')
  AND NOT EXISTS (SELECT 1 FROM pg_extension_update_paths('role_guard') p
                  WHERE p.source = v.version AND p.path IS NOT NULL
                    AND p.target = (SELECT default_version FROM pg_available_extensions
                                    WHERE name = 'role_guard'));

-- the library answers the 1.0 and 1.1 views of a database not yet updated
CREATE EXTENSION role_guard VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'role_guard';
SELECT count(*) >= 0 AS usage_answers FROM role_guard_usage;
SELECT count(*) >= 0 AS budgets_answers FROM role_guard_budgets;
SELECT count(*) = 1 AS summary_answers FROM role_guard_summary;
SELECT count(*) >= 0 AS events_answers FROM role_guard_events;
DROP EXTENSION role_guard;
CREATE EXTENSION role_guard VERSION '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'role_guard';
SELECT count(*) >= 0 AS usage_answers FROM role_guard_usage;
SELECT count(*) >= 0 AS budgets_answers FROM role_guard_budgets;
SELECT count(*) = 1 AS summary_answers FROM role_guard_summary;
SELECT count(*) >= 0 AS reservations_answers FROM role_guard_reservations;
SELECT count(*) >= 0 AS events_answers FROM role_guard_events;
DROP EXTENSION role_guard;

CREATE EXTENSION role_guard;
RESET client_min_messages;
