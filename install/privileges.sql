-------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC
-------------------------------------------------------------------------------

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA herald FROM PUBLIC;
