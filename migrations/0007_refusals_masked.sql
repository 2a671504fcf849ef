-- Refused launches recorded before the log masked every value outside an allow-list of fields
-- that describe the launch (see lti::diagnosis::is_readable_field) may hold values of custom_*
-- fields or the user's Moodle sesskey in the return URL: their base strings are dropped.
-- Never edit once shipped: add a new file.
UPDATE refusals SET base_string = '(not kept: recorded before values were masked)';
