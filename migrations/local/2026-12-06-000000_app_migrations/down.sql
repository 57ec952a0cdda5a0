DROP TABLE app_migrations;
