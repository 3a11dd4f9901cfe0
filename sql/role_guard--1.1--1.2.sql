/* role_guard--1.1--1.2.sql */

\echo Use "ALTER EXTENSION role_guard UPDATE TO '1.2'" to load this file. \quit

-- Version 1.2.  Each part of 1.2 keeps its objects
-- in one block below, headed by the issue it comes from, so that parts
-- built side by side append blocks instead of editing each other's.  A fresh
-- CREATE EXTENSION runs role_guard--1.0.sql, then --1.0--1.1.sql, then this
-- script; a database still at 1.0 or 1.1 keeps its own views, which call
-- only functions whose columns never change (new columns come from new
-- functions).

-- ---------------------------------------------------------------------------
-- Login blocks after failed authentications (issue 26)
-- (objects follow in the next landing of this part)
-- ---------------------------------------------------------------------------
